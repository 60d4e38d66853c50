"""Structured pruning: how much faster generation gets, and what it costs on a quality base (the
synthetic proxy, or the yardstick with ``--base docs/results/yardstick``).

    python benchmarks/structured_speed.py --threads 2   # timing of every variant, then the frontier's
                                                        # proxy quality with a control, 3 seeds each
    python benchmarks/structured_speed.py --skip-quality  # timing only (~5 min)
    python benchmarks/structured_speed.py --skip-speed --quality-variants dec3_ffn50_heads50
    python benchmarks/structured_speed.py --skip-speed --base docs/results/yardstick --out runs/ss_yardstick

Speed (one process, every variant timed in the same run, interleaved over ``--reps`` rounds, the
fastest round kept): a random model of the t5-small shape (``--config-dir``: config + real
tokenizer, no weights needed) and its structured variants, each a standard smaller T5 made by
``summprune.methods.structured`` (weight-norm importance: on random weights which neurons go does not
change the speed). Each generates summaries of the 20 real BillSum documents in ``--data``
(``"summarize: " + text`` truncated to 1024 tokens, batch ``--batch-size``, greedy, exactly
``--new-tokens`` new tokens forced: EOS is masked until then). Reported: s/doc, speed-up over
dense, parameter count.

Quality (``--skip-quality`` to skip): the same variants cut from the committed proxy
(``docs/results/proxy/``, ``benchmarks/proxy.py``: t5-small's 6+6 blocks and 8 heads at d_model
128, a model that reads its bill), so every variant has the same shape as on t5-small, only
narrower. The neurons and heads removed are chosen by first-order Taylor importance on 16
training batches (the package's driver, ``[prune.structured]``). Every variant and
``dense_control`` (the dense proxy, nothing removed) then get the same recovery:
``--recovery-steps`` optimizer steps distilled from the dense proxy (alpha 0.5, T 2), batch
``--recovery-batch-size``, learning rate ``--recover-lr``, once per ``--seeds`` seed; each is
scored on the proxy's held-out bills (course score, ROUGE-Lsum, title copied) right after the
removal and after the recovery. Percentages are of the control's mean; "beats" only where the
seeds' min-max ranges do not overlap.

Outputs in ``--out`` (default docs/results/structured_speed/): results.json (``quality.records``:
one record per variant and seed, with ``variant``, ``seed``, ``recovery_steps``, ``kaggle_score``,
``rougeLsum``; written after each, so an interrupted run resumes), table.md, speed_quality.png.

``--base`` (alias ``--proxy``): the model the variants are cut from, the synthetic proxy above (the
default) or the yardstick (``benchmarks/yardstick.py``: 6+6 blocks too, pretrained on real text and
fine-tuned on docstring -> summary; recoveries draw from its corpus, ``--corpus``, and it is scored
on its held-out ``test.jsonl`` pairs; no title copy rates). The settings and results name the base
(kind and sha256); the page says which it was.

Long budgets on few cores: run the control and the variants as separate one-thread processes
(``--quality-variants dense`` in one, ``--no-control`` in the other, each its own ``--out``), then
join them with ``--reuse`` (a run whose records all come from ``--reuse`` trains nothing and writes
the page). ``--reuse`` copies a variant's records only from a file with equal settings, and the
control's also from one that differs only in how variants are cut (``CUT_ONLY``: nothing is cut
from the control); every copy keeps ``copied_from``, and the page names it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
PREFIX = "summarize: "
MAX_SOURCE = 1024

#: name -> (encoder layers kept of 6, decoder layers kept of 6, FFN fraction kept, head fraction kept)
VARIANTS: dict[str, tuple[int, int, float, float]] = {
    "dense": (6, 6, 1.0, 1.0),
    "dec3": (6, 3, 1.0, 1.0),
    "dec2": (6, 2, 1.0, 1.0),
    "dec1": (6, 1, 1.0, 1.0),  # deep encoder, shallow decoder (Kasai et al.; flan-t5-small 6-1)
    "ffn50": (6, 6, 0.5, 1.0),
    "heads50": (6, 6, 1.0, 0.5),
    "ffn50_heads50": (6, 6, 0.5, 0.5),
    "dec2_ffn50": (6, 2, 0.5, 1.0),
    "dec2_ffn50_heads50": (6, 2, 0.5, 0.5),
    "enc4_dec2_ffn50_heads50": (4, 2, 0.5, 0.5),
    "dec2_ffn25_heads50": (6, 2, 0.25, 0.5),
    "dec3_ffn50_heads50": (6, 3, 0.5, 0.5),
    "dec3_ffn50_heads25": (6, 3, 0.5, 0.25),
    "enc4_dec3_ffn50_heads50": (4, 3, 0.5, 0.5),
    "enc4_dec3_ffn25_heads50": (4, 3, 0.25, 0.5),
}


#: the quality grid's default: the two shapes >= 2.5x in the 2026-11-24 timing that had not collapsed
#: on the earlier proxy (docs/methods.md gives today's timings)
FRONTIER = ("enc4_dec3_ffn50_heads50", "dec2_ffn50_heads50")


def pct(x: float, ref: float) -> str:
    """``x`` as a percentage of ``ref`` ("-" when ``ref`` is 0: an untrained tiny proxy in the tests)."""
    return f"{100 * x / ref:.1f}%" if ref else "-"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def shape_label(cfg) -> str:
    return f"{cfg.num_layers}+{cfg.num_decoder_layers} L, d_ff {cfg.d_ff}, {cfg.num_heads} h"


def make_variant(model, spec, full_layers: int = 6, importance: str = "weight", train_ds=None, tok=None,
                 batch_size: int = 16, work_dir: Path | str = "runs/structured_speed", layer_selection: str = "spread"):
    """The structured variant ``spec`` of ``model`` (layer counts scaled from a 6-layer stack),
    cut by the package's driver from a ``[prune.structured]`` section, without recovery."""
    from summprune.config import ExperimentConfig, PruneConfig, TrainConfig
    from summprune.methods.structured import StructuredConfig
    from summprune.pipeline import prune_model

    enc, dec, ffn, heads = spec
    n_enc, n_dec = model.config.num_layers, model.config.num_decoder_layers
    scale = lambda k, n: n if k >= full_layers else max(1, round(n * k / full_layers))  # noqa: E731
    if (scale(enc, n_enc), scale(dec, n_dec), ffn, heads) == (n_enc, n_dec, 1.0, 1.0):
        return copy.deepcopy(model), None
    sc = StructuredConfig(ffn_keep=ffn, heads_keep=heads, encoder_layers=scale(enc, n_enc),
                          decoder_layers=scale(dec, n_dec), importance=importance, importance_batches=16,
                          layer_selection=layer_selection)
    cfg = ExperimentConfig(train=TrainConfig(batch_size=batch_size), prune=PruneConfig(methods={"structured": sc}))
    small, _, sections = prune_model(copy.deepcopy(model), tok, cfg, train_ds=train_ds, work_dir=work_dir,
                                     log_print=lambda s: None)
    return small, sections["structured"]["plan"]


def n_params(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


# ----------------------------------------------------------------------------- speed


def time_generation(model, tok, texts, new_tokens: int, batch_size: int) -> tuple[float, float, list[str]]:
    from summprune.generate import generate_summaries

    t, c = time.perf_counter(), time.process_time()
    out = generate_summaries(model, tok, texts, prefix=PREFIX, max_source_length=MAX_SOURCE,
                             max_length=new_tokens + 1, min_new_tokens=new_tokens, batch_size=batch_size,
                             device="cpu", progress=False)
    return time.perf_counter() - t, time.process_time() - c, [out[i] for i in range(len(texts))]


def run_speed(a, names: list[str]) -> dict:
    from summprune.data import load_split
    from summprune.modeling import load_tokenizer, random_model_from_config

    rows = load_split(a.data, "test", columns=("text", "summary"))
    texts = list(rows["text"])[: a.docs]
    tok = load_tokenizer(a.config_dir)
    dense = random_model_from_config(a.config_dir).eval()
    lengths = [min(len(ids), MAX_SOURCE) for ids in tok([PREFIX + t for t in texts])["input_ids"]]
    threads = torch.get_num_threads()
    log(f"speed: {len(texts)} docs from {a.data}, source tokens min {min(lengths)} mean "
        f"{sum(lengths) / len(lengths):.0f} max {max(lengths)}; {a.new_tokens} new tokens forced, batch "
        f"{a.batch_size}, {threads} threads, load average {os.getloadavg()[0]:.2f}")
    models = {}
    for name in names:
        models[name] = make_variant(dense, VARIANTS[name])[0].eval()
    time_generation(dense, tok, texts[:2], 8, 2)  # warm-up
    best: dict[str, dict] = {}
    for rep in range(a.reps):
        for name in names:
            wall, cpu, out = time_generation(models[name], tok, texts, a.new_tokens, a.batch_size)
            rec = best.get(name)
            if rec is None or wall < rec["wall_s"]:
                best[name] = {"wall_s": round(wall, 2), "busy": round(cpu / (wall * threads), 3)}
            log(f"  round {rep + 1} {name:<26} {wall:6.1f} s  {wall / len(texts):.3f} s/doc  "
                f"{cpu / (wall * threads):4.0%} busy")
    dense_wall = best["dense"]["wall_s"] if "dense" in best else None
    for name in names:
        m = models[name]
        best[name].update({"s_per_doc": round(best[name]["wall_s"] / len(texts), 4), "params": n_params(m),
                           "shape": shape_label(m.config),
                           "speedup": round(dense_wall / best[name]["wall_s"], 3) if dense_wall else None})
    return {"docs": len(texts), "new_tokens": a.new_tokens, "batch_size": a.batch_size, "threads": threads,
            "reps": a.reps, "load_end": round(os.getloadavg()[0], 2), "variants": best}


# ----------------------------------------------------------------------------- quality on the base


def run_quality(a, names: list[str], results: dict, save) -> None:
    """Every variant and a dense control, each recovered with the same distilled training (steps,
    batch, learning rate, teacher) for every ``--seeds`` seed, scored on the base's held-out rows."""
    import grid as G
    import sparsity_quality as sq

    dense, tok, meta, data = G.load_base(a.base, a.corpus)
    msl, prefix, label = meta["max_source_length"], meta["prefix"], G.LABELS[meta["kind"]]
    rows = data["eval"][: a.eval_docs]
    # the proxy's keys as before (its committed files stay valid); the yardstick's name it
    settings = {**G.base_settings(meta), "recovery_steps": a.recovery_steps,
                "alpha": 0.5, "temperature": 2.0, "importance": "taylor", "importance_batches": 16,
                "eval_docs": len(rows), "recover_lr": a.recover_lr, "batch_size": a.recovery_batch_size,
                **({"distill_features": a.distill_features} if a.distill_features else {}),
                **({"distill_sequences": a.distill_sequences} if a.distill_sequences else {}),
                **({"layer_selection": a.layer_selection} if a.layer_selection != "spread" else {}),
                **({"trim_vocab": True} if a.trim_vocab else {})}
    q = results.setdefault("quality", {})
    if q.get("settings") != settings:
        q.clear()
        q["settings"] = settings
    q.setdefault("records", [])
    # the settings keep the short prefix the cells compare on; the results the full hash
    results["base"] = G.base_record(meta, a.base)
    if meta["kind"] == "proxy":
        results["proxy"] = {"sha256": meta["sha256_full"]}
    else:
        results["base"]["checks"] = G.yardstick_checks(meta)
        results.pop("proxy", None)  # a file that held a proxy run before: its quality part is gone
    reuse_records(q, a.reuse, names, a.seeds)
    save()
    if "dense" not in q:
        q["dense"] = {**G.score_base(dense, tok, rows, meta), "params": n_params(dense), "shape": shape_label(dense.config)}
        save()
    log(f"quality: dense {label} {q['dense']['shape']}: course score {q['dense']['kaggle_score']:.4f} "
        f"ROUGE-Lsum {q['dense']['rougeLsum']:.4f} ({len(rows)} docs), before any recovery")
    train_ds = G.to_dataset(data["train"][: a.recovery_docs], tok, msl, prefix, meta["max_target_length"])
    qa = sq.parse_args(["--recover-lr", str(a.recover_lr), "--batch-size", str(a.recovery_batch_size),
                        "--distill-features", str(a.distill_features),
                        "--distill-sequences", str(a.distill_sequences)])
    work = Path(a.work)
    for name in names:
        if name == "dense" and a.no_control:
            continue
        for seed in a.seeds:
            variant = "dense_control" if name == "dense" else name
            if any(r["variant"] == variant and r["seed"] == seed for r in q["records"]):
                continue
            t0 = time.time()
            # the package's path: [prune.structured] through the driver (Taylor importance on 16
            # training batches), then the package's recovery distilled from the dense base, what
            # `run` does after the removal; the control gets the same recovery without removal
            model, plan = make_variant(dense, VARIANTS[name], importance="taylor", train_ds=train_ds, tok=tok,
                                       batch_size=a.recovery_batch_size, work_dir=work,
                                       layer_selection=a.layer_selection)
            before = G.score_base(model, tok, rows, meta) if name != "dense" else None
            sq.distilled_recovery(model, dense, tok, train_ds, qa, seed, a.recovery_steps, work)
            after = G.score_base(model, tok, rows, meta)
            trimmed = (trimmed_score(model, tok, data["train"][: a.recovery_docs], rows, meta)
                       if a.trim_vocab and name != "dense" else None)
            rec = {"variant": variant, "target": None, "seed": seed, "recovery_steps": a.recovery_steps,
                   "shape": shape_label(model.config), "params": n_params(model),
                   "before_kaggle": before["kaggle_score"] if before else None, **after,
                   **({"trimmed": trimmed} if trimmed else {}),
                   "seconds": round(time.time() - t0, 1), "plan": plan}
            q["records"].append(rec)
            save()
            log(f"  {variant:<26} seed {seed} {rec['shape']}: course "
                f"{before['kaggle_score'] if before else float('nan'):.4f} after removal -> "
                f"{after['kaggle_score']:.4f} after {a.recovery_steps} KD steps ("
                + (f"title {after['title_rate']:.0%}, " if "title_rate" in after else "")
                + f"{after['empty']} empty) [{rec['seconds']} s]")


def trimmed_score(model, tok, train_rows: list[dict], rows: list[dict], meta: dict) -> dict:
    """The recovered ``model`` with its vocabulary trimmed to the tokens of its training rows
    (``summprune.vocab.trim``, the path of ``export --trim-vocab``: inputs with the prefix, and
    summaries, every token counted once or more), scored on the same held-out ``rows`` with the
    trimmed tokenizer; and how many of those rows' input tokens it turns into ``<unk>``."""
    import grid as G

    from summprune.modeling import load_tokenizer
    from summprune.vocab import count_unknown, trim

    texts, sums = [r["text"] for r in train_rows], [r["summary"] for r in train_rows]
    with trim(model, tok, texts, sums, prefix=meta["prefix"], source="the recovery's training rows") as (tm, files, rec):
        ttok = load_tokenizer(files.files[0].parent)
        res = G.score_base(tm.eval(), ttok, rows, meta)
        unk, docs = count_unknown(ttok, [r["text"] for r in rows], meta["prefix"], meta["max_source_length"])
    return {"kaggle_score": res["kaggle_score"], "rougeLsum": res["rougeLsum"], "vocab_size": rec["vocab_size"],
            "original_vocab_size": rec["original_vocab_size"], "params": rec["params"]["after"],
            "unknown_tokens": unk, "unknown_docs": docs}


#: settings that change how a variant is cut (or scored beside) but not the dense control
CUT_ONLY = ("importance", "importance_batches", "layer_selection", "trim_vocab")


def reuse_records(q: dict, paths: list[str], names: list[str], seeds: list[int]) -> None:
    """Copy into ``q`` the records of other runs' results.json that this run would otherwise train
    again: a variant's records where every setting is equal, the dense control's where the settings
    differ at most in how variants are cut (``CUT_ONLY``). Each copy names its file (``copied_from``);
    anything else in those files is ignored, so a copy is never of a different experiment."""
    wanted = {"dense_control" if n == "dense" else n for n in names}
    strip = lambda s: {k: v for k, v in s.items() if k not in CUT_ONLY}  # noqa: E731
    for path in paths:
        if not Path(path).is_file():
            raise SystemExit(f"--reuse: {path} does not exist")
        other = json.loads(Path(path).read_text()).get("quality", {})
        same, same_control = other.get("settings") == q["settings"], strip(other.get("settings") or {}) == strip(q["settings"])
        if not same_control:
            raise SystemExit(f"--reuse: {path} was measured with other settings than this run:\n"
                             f"  {other.get('settings')}\n  {q['settings']}")
        for r in other.get("records", []):
            ok = same or (same_control and r["variant"] == "dense_control")
            have = any(x["variant"] == r["variant"] and x["seed"] == r["seed"] for x in q["records"])
            if ok and not have and r["variant"] in wanted and r["seed"] in seeds:
                q["records"].append({**r, "copied_from": r.get("copied_from") or str(path)})
                log(f"  reused {r['variant']} seed {r['seed']} from {path}")


def quality_stats(q: dict) -> dict:
    """{variant: stats of kaggle_score over seeds} (+ rougeLsum, title rate, before-removal)."""
    import grid as G

    out = {}
    for v in {r["variant"] for r in q.get("records", [])}:
        rs = [r for r in q["records"] if r["variant"] == v]
        out[v] = {"kaggle": G.stats([r["kaggle_score"] for r in rs]),
                  "rougeLsum": G.stats([r["rougeLsum"] for r in rs]),
                  "title": G.stats([r["title_rate"] for r in rs]) if "title_rate" in rs[0] else None,
                  "before": G.stats([r["before_kaggle"] for r in rs]) if rs[0]["before_kaggle"] is not None else None,
                  "trimmed": G.stats([r["trimmed"]["kaggle_score"] for r in rs]) if all("trimmed" in r for r in rs) else None,
                  "trim": [r["trimmed"] for r in rs if "trimmed" in r],
                  "shape": rs[0]["shape"]}
    return out


# ----------------------------------------------------------------------------- output


def write_outputs(results: dict, names: list[str], out: Path, a) -> str:
    import grid as G

    sp = results.get("speed", {}).get("variants", {})
    q = results.get("quality", {})
    qs = quality_stats(q)
    ctrl = qs.get("dense_control")
    base = G.base_of(results)
    label = G.LABELS[base["kind"]]
    is_proxy = base["kind"] == "proxy"
    rows_are = "bills" if is_proxy else "pairs"
    # only the rows something was measured for (a quality-only run would list every variant empty)
    names = [n for n in names if n in sp or ("dense_control" if n == "dense" else n) in qs]
    lines = []
    if "speed" in results:
        s = results["speed"]
        lines.append(f"Speed: random t5-small-shaped weights, {s['docs']} real BillSum docs (1024-token inputs), "
                     f"{s['new_tokens']} new tokens forced, batch {s['batch_size']}, {s['threads']} CPU threads, "
                     f"fastest of {s['reps']} interleaved rounds.")
    if q.get("dense"):
        qd, st = q["dense"], q["settings"]
        lines.append(f"Quality: the {label} of `{base.get('dir', 'docs/results/proxy')}/`"
                     + ("" if is_proxy else ", a T5 pretrained on real text and fine-tuned on docstring -> summary")
                     + " (" + (f"sha256 `{base['sha256'][:16]}`, " if base.get("sha256") else "")
                     + f"{qd['shape']}, {qd['params'] / 1e6:.2f}M params; "
                     f"{qd['kaggle_score']:.4f} course score on {st['eval_docs']} held-out {rows_are} before any recovery). "
                     f"Every row, the dense control included, gets the same recovery: {st['recovery_steps']} steps "
                     f"distilled from the dense {label} (alpha {st['alpha']}, T {st['temperature']}"
                     + (f", feature KD weight {st['distill_features']}" if st.get("distill_features") else "")
                     + (f", {st['distill_sequences']:.0%} of the training rows labelled with the dense {label}'s "
                        "greedy summaries" if st.get("distill_sequences") else "")
                     + f"), batch "
                     f"{st['batch_size']}, learning rate {st['recover_lr']}; variants are cut with Taylor importance"
                     + (", keeping the first blocks of a depth cut (not spread)" if st.get("layer_selection") == "first" else "")
                     + ". "
                     "Mean [min-max] over seeds; '% of control' is of the control's mean; 'vs control': beats / "
                     "ties / loses to by non-overlapping ranges.")
        copied = sorted({(r["variant"], r["copied_from"]) for r in q.get("records", []) if r.get("copied_from")})
        for v, src in copied:
            seeds = sorted(r["seed"] for r in q["records"] if r["variant"] == v and r.get("copied_from") == src)
            lines.append(f"The {v} records of seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} are copied from `{src}` "
                         "(the same recovery settings and seeds: trained there, not again here).")
    lines += ["", f"| variant | t5-small shape | params (M) | s/doc | speed-up | {label} shape | seeds | {label} course, "
              f"removed | {label} course, recovered | % of control | vs control |" + (" title copied |" if is_proxy else ""),
              "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if is_proxy else "")]
    for name in names:
        r = sp.get(name, {})
        v = qs.get("dense_control" if name == "dense" else name)
        cells = [name if name != "dense" else "dense (control)", r.get("shape", "-"),
                 f"{r['params'] / 1e6:.1f}" if r else "-", f"{r['s_per_doc']:.3f}" if r else "-",
                 f"{r['speedup']:.2f}x" if r.get("speedup") else "-"]
        if v:
            cells += [v["shape"], str(v["kaggle"]["n"]), G.fmt(v["before"]) if v["before"] else "-", G.fmt(v["kaggle"]),
                      pct(v["kaggle"]["mean"], ctrl["kaggle"]["mean"]) if ctrl else "-",
                      "-" if name == "dense" or not ctrl else G.verdict(v["kaggle"], ctrl["kaggle"])]
            if is_proxy:
                cells.append(f"{v['title']['mean']:.0%}" if v["title"] else "-")
        else:
            cells += ["-"] * (7 if is_proxy else 6)
        lines.append("| " + " | ".join(cells) + " |")
    trimmed = [n for n in names if n != "dense" and qs.get(n, {}).get("trimmed")]
    if trimmed:
        lines += ["", "Each recovered variant again with its vocabulary trimmed to the tokens of its recovery's training "
                  "rows (`summprune.vocab.trim`, the path of `export --trim-vocab`), scored on the same held-out "
                  f"{rows_are} with the trimmed tokenizer; '% of control' is of the untrimmed dense control's mean.", "",
                  f"| variant | vocabulary kept | params (M), trimmed | held-out input tokens -> `<unk>` | {label} course, "
                  f"untrimmed | {label} course, trimmed | % of control, trimmed | vs control, trimmed |",
                  "|---|---|---|---|---|---|---|---|"]
        for n in trimmed:
            v, t = qs[n], qs[n]["trim"]
            lines.append("| " + " | ".join([
                n, f"{t[0]['vocab_size']:,} of {t[0]['original_vocab_size']:,}", f"{t[0]['params'] / 1e6:.2f}",
                ", ".join(str(x["unknown_tokens"]) for x in t) + f" (seeds; in {max(x['unknown_docs'] for x in t)} docs at most)",
                G.fmt(v["kaggle"]), G.fmt(v["trimmed"]),
                pct(v["trimmed"]["mean"], ctrl["kaggle"]["mean"]) if ctrl else "-",
                G.verdict(v["trimmed"], ctrl["kaggle"]) if ctrl else "-"]) + " |")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    pts = []
    for n in names:
        v = qs.get("dense_control" if n == "dense" else n)
        if n in sp and sp[n].get("speedup") and v and ctrl and ctrl["kaggle"]["mean"]:
            k, c = v["kaggle"], ctrl["kaggle"]["mean"]
            pts.append((n, sp[n]["speedup"], 100 * k["mean"] / c, 100 * k["min"] / c, 100 * k["max"] / c))
    if pts:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 5))
        colour = lambda x, y: "tab:green" if x >= 2.5 and y >= 95 else "tab:red" if y < 50 else "tab:blue"  # noqa: E731
        for _, x, y, lo, hi in pts:
            ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], fmt="o", color=colour(x, y), capsize=3, zorder=3)
        # numbers at the points and the names in a key beside the axes: names at crowded points overlap
        ordered = sorted(pts, key=lambda p: p[1])
        for i, (n, x, y, _, _) in enumerate(ordered, 1):
            ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(5, 4 if i % 2 else -11), fontsize=8)
        key = "\n".join(f"{i:>2}  {n}  ({x:.2f}x, {y:.0f}%)" for i, (n, x, y, _, _) in enumerate(ordered, 1))
        fig.text(0.70, 0.5, key, fontsize=7.5, family="monospace", va="center")
        ax.axvline(2.5, color="tab:red", ls=":", lw=1, label="2.5x faster (target)")
        ax.axhline(95, color="k", ls=":", lw=1, label="95% of the control (target)")
        ax.set_xlabel("generation speed-up over dense t5-small shape (CPU, measured)")
        ax.set_ylabel(f"{label} course score, % of dense control (mean, min-max)")
        ax.set_ylim(-8, max(115, max(p[4] for p in pts) + 8))
        ax.set_title(f"Structured variants: speed (t5-small shape) vs quality ({label}, equal recovery)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left")
        fig.tight_layout(rect=(0, 0, 0.69, 1))
        fig.savefig(out / "speed_quality.png", dpi=120)
        plt.close(fig)
    import pages

    pages.write_readme(out, f"Structured variants: CPU generation speed and {label} quality", "structured_speed.py",
                       pages.command_text(results, "python benchmarks/structured_speed.py"), table,
                       images=("speed_quality.png",), settings=results.get("quality", {}).get("settings"),
                       page_only="--skip-speed --skip-quality")
    return table


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   help="variants to time ('dense' is always added)")
    p.add_argument("--quality-variants", nargs="+", default=list(FRONTIER), choices=list(VARIANTS),
                   help="variants measured on the base (--base), every seed (the dense control always runs); default: "
                        "FRONTIER, the two shapes the README discusses")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "billsum" / "us_test_sample.jsonl"))
    p.add_argument("--config-dir", default=str(ROOT.parent / "shared" / "t5-small"))
    p.add_argument("--docs", type=int, default=20)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16, help="generation batch (16: our default, see generate_speed)")
    p.add_argument("--reps", type=int, default=2, help="interleaved timing rounds; the fastest is kept")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--recovery-steps", type=int, default=100, help="quality: KD recovery steps per variant and control")
    p.add_argument("--recover-lr", type=float, default=1e-3, help="quality: recovery learning rate (issue-7 default)")
    p.add_argument("--recovery-batch-size", type=int, default=8, help="quality: recovery batch")
    p.add_argument("--distill-features", type=float, default=0.0,
                   help="quality: weight of feature distillation (SquareHead) added to the logit KD (0 = none)")
    p.add_argument("--distill-sequences", type=float, default=0.0,
                   help="quality: share of training rows labelled with the dense base's greedy summaries "
                        "(sequence-level KD, beside the logit KD; 0 = none)")
    p.add_argument("--layer-selection", default="spread", choices=["spread", "first"],
                   help="which decoder/encoder blocks a depth cut keeps: evenly spaced with the first and last "
                        "('spread'), or the first ones")
    p.add_argument("--reuse", nargs="+", default=[], metavar="RESULTS_JSON",
                   help="quality: copy records from these results.json files instead of training them again: a "
                        "variant's where every setting is equal, the control's where only how variants are cut "
                        "differs; each copy names its file")
    p.add_argument("--no-control", action="store_true",
                   help="quality: train no dense control here (it comes from --reuse, e.g. a run started beside this one)")
    p.add_argument("--recovery-docs", type=int, default=4000, help="quality: training rows the recoveries draw from")
    p.add_argument("--trim-vocab", action="store_true",
                   help="quality: also score each recovered variant with its vocabulary trimmed to those training "
                        "rows' tokens (as `export --trim-vocab` does), on the same held-out rows")
    p.add_argument("--eval-docs", type=int, default=100, help="quality: held-out rows scored per record")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="quality: recovery seeds per variant")
    import grid as G

    G.add_base_arguments(p, "structured_speed", "the model the variants are cut from")
    p.add_argument("--work", default=str(ROOT / "runs" / "structured_speed"), help="trainer scratch space")
    a = p.parse_args(argv)
    if a.out is None:
        import grid as G

        a.out = str(G.default_out("structured_speed", a.base))
    if "dense" not in a.variants:
        a.variants.insert(0, "dense")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    for what, path in (("--data", Path(a.data)), ("--config-dir", Path(a.config_dir) / "config.json")):
        if not a.skip_speed and not path.is_file():
            print(f"structured_speed.py: error: {what}: {path} not found", file=sys.stderr)
            return 2
    if a.threads:
        torch.set_num_threads(a.threads)
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    results = json.loads(res_path.read_text()) if res_path.is_file() else {}

    def save():
        tmp = res_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, res_path)

    names = [n for n in VARIANTS if n in a.variants]
    if not (a.skip_speed and a.skip_quality):
        import pages

        pages.record_command(results, "structured_speed.py", argv)
    if not a.skip_speed:
        results["speed"] = run_speed(a, names)
        save()
    if not a.skip_quality:
        run_quality(a, ["dense"] + [n for n in VARIANTS if n in a.quality_variants and n != "dense"], results, save)
    table = write_outputs(results, names, out, a)
    print(table)
    sp = results.get("speed", {}).get("variants", {})
    q = results.get("quality", {})
    qs = quality_stats(q)
    if sp and "dense_control" in qs:
        c = qs["dense_control"]["kaggle"]["mean"]
        ok = [n for n in names if n != "dense" and n in sp and n in qs
              and sp[n]["speedup"] >= 2.5 and qs[n]["kaggle"]["mean"] >= 0.95 * c]
        print(f"variants >= 2.5x faster keeping >= 95% of the control's mean score: {', '.join(ok) or 'none'}")
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Structured pruning: how much faster generation gets, and what it costs on the quality proxy.

    python benchmarks/structured_speed.py                    # speed + proxy quality (~30 min, 2 cores)
    python benchmarks/structured_speed.py --skip-quality     # speed only (~5 min)
    python benchmarks/structured_speed.py --variants dec2 dec2_ffn50_heads50 --recovery-steps 200

Speed (one process, every variant timed in the same run, interleaved over ``--reps`` rounds, the
fastest round kept): a random model of the t5-small shape (``--config-dir``: config + real
tokenizer, no weights needed) and its structured variants, each a standard smaller T5 made by
``summprune.methods.structured`` (weight-norm importance: on random weights which neurons go does not
change the speed). Each generates summaries of the 20 real BillSum documents in ``--data``
(``"summarize: " + text`` truncated to 1024 tokens, batch ``--batch-size``, greedy, exactly
``--new-tokens`` new tokens forced: EOS is masked until then). Reported: s/doc, speed-up over
dense, parameter count.

Quality (``--skip-quality`` to skip): the same variants cut from a dense proxy trained by
``benchmarks/sparsity_quality.py`` on its hard synthetic corpus, at t5-small's depth and head
count so that every variant has the same shape as on t5-small, only narrower: 6+6 layers, 8 heads,
d_model 64, d_ff 256 (0.8M parameters; ``python benchmarks/sparsity_quality.py --proxy-only
--proxy-dir runs/proxy_deep --d-model 64 --layers 6 --heads 8``, 20 minutes, cached). Each variant
is scored on the proxy's 100 held-out documents (course score, ROUGE-Lsum) right after the removal
and after ``--recovery-steps`` optimizer steps of recovery fine-tuning with distillation from the
dense proxy (alpha 0.5, T 2: the issue-7 recipe). The neurons and heads removed are chosen by
first-order Taylor importance on 16 validation batches. With another ``--proxy-dir`` (e.g. the
2+2-layer ``runs/proxy``) layer counts are scaled: ``k`` of 6 becomes ``max(1, round(n * k / 6))``
of ``n``; the table says which proxy shape each row measured.

Outputs in ``--out`` (default runs/structured_speed/): results.json (written after every
variant, so an interrupted run resumes), table.md, speed_quality.png.
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
#: the quality proxy: sparsity_quality.py's proxy at t5-small's depth and head count (narrower)
PROXY_FLAGS = "--proxy-dir runs/proxy_deep --d-model 64 --layers 6 --heads 8"

#: name -> (encoder layers kept of 6, decoder layers kept of 6, FFN fraction kept, head fraction kept)
VARIANTS: dict[str, tuple[int, int, float, float]] = {
    "dense": (6, 6, 1.0, 1.0),
    "dec3": (6, 3, 1.0, 1.0),
    "dec2": (6, 2, 1.0, 1.0),
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


def pct(x: float, ref: float) -> str:
    """``x`` as a percentage of ``ref`` ("-" when ``ref`` is 0: an untrained tiny proxy in the tests)."""
    return f"{100 * x / ref:.1f}%" if ref else "-"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def shape_label(cfg) -> str:
    return f"{cfg.num_layers}+{cfg.num_decoder_layers} L, d_ff {cfg.d_ff}, {cfg.num_heads} h"


def make_variant(model, spec, full_layers: int = 6, importance: str = "weight", train_ds=None, tok=None,
                 batch_size: int = 16, work_dir: Path | str = "runs/structured_speed"):
    """The structured variant ``spec`` of ``model`` (layer counts scaled from a 6-layer stack),
    cut by the package's driver from a ``[prune.structured]`` section, without recovery."""
    from summprune.config import ExperimentConfig, PruneConfig, StructuredConfig, TrainConfig
    from summprune.pipeline import prune_model

    enc, dec, ffn, heads = spec
    n_enc, n_dec = model.config.num_layers, model.config.num_decoder_layers
    scale = lambda k, n: n if k >= full_layers else max(1, round(n * k / full_layers))  # noqa: E731
    if (scale(enc, n_enc), scale(dec, n_dec), ffn, heads) == (n_enc, n_dec, 1.0, 1.0):
        return copy.deepcopy(model), None
    sc = StructuredConfig(ffn_keep=ffn, heads_keep=heads, encoder_layers=scale(enc, n_enc),
                          decoder_layers=scale(dec, n_dec), importance=importance, importance_batches=16)
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


# ----------------------------------------------------------------------------- proxy quality


def run_quality(a, names: list[str], results: dict, save) -> None:
    import sparsity_quality as sq

    from summprune.config import RecoveryConfig
    from summprune.recovery import make_teacher, recover

    meta_path = Path(a.proxy_dir) / "meta.json"
    if not meta_path.is_file():
        raise SystemExit(f"structured_speed.py: error: no dense proxy in {a.proxy_dir}; train it once with "
                         f"`python benchmarks/sparsity_quality.py --proxy-only {PROXY_FLAGS}` (about 20 min), "
                         f"or pass --skip-quality")
    # the proxy's own settings (shape, data, training) rebuild the same data and fingerprint
    ps = json.loads(meta_path.read_text())["settings"]
    qa = sq.parse_args(["--proxy-dir", a.proxy_dir, "--recovery-steps", str(a.recovery_steps),
                        "--recover-lr", str(a.recover_lr),
                        "--threads", str(a.threads or 1), "--d-model", str(ps["d_model"]), "--layers",
                        str(ps["layers"]), "--heads", str(ps["heads"]), "--vocab", str(ps["vocab"]),
                        "--train-docs", str(ps["train_docs"]), "--val-docs", str(ps["val_docs"]),
                        "--corpus-seed", str(ps["corpus_seed"]), "--max-source-length", str(ps["max_source_length"]),
                        "--max-target-length", str(ps["max_target_length"]), "--proxy-lr", str(ps["lr"]),
                        "--batch-size", str(ps["batch_size"]), "--proxy-minutes", str(ps["minutes"]),
                        "--proxy-eval-every", str(ps["eval_every"]), "--proxy-patience", str(ps["patience"])])
    data = sq.make_data(qa)
    dense, tok, meta = sq.get_proxy(qa, data)
    dense.eval()
    q = results.setdefault("quality", {})
    settings = {"proxy": meta["fingerprint"], "recovery_steps": a.recovery_steps, "alpha": 0.5, "temperature": 2.0,
                "importance": "taylor", "importance_batches": 16, "importance_split": "train", "eval_docs": len(data["eval"]), "seed": a.seed}
    if a.recover_lr != 1e-3:
        settings["recover_lr"] = a.recover_lr
    if a.seed == 0:
        settings.pop("seed")  # results.json of the first measured run carries no seed key
    if q.get("settings") != settings:
        q.clear()
        q["settings"] = settings
    if "dense" not in q:
        d = sq.score(dense, tok, data["eval"], qa)
        q["dense"] = {"kaggle_score": d["kaggle_score"], "rougeLsum": d["rougeLsum"], "empty": d.get("empty"),
                      "params": n_params(dense),
                      "shape": shape_label(dense.config)}
        save()
    log(f"quality: dense proxy {q['dense']['shape']}: course score {q['dense']['kaggle_score']:.4f} "
        f"ROUGE-Lsum {q['dense']['rougeLsum']:.4f} ({len(data['eval'])} docs)")
    train_ds = sq.to_dataset(data["train"], tok, qa)
    work = Path(a.out)
    for name in names:
        if name == "dense" or name in q.get("variants", {}):
            continue
        t0 = time.time()
        # the package's path: [prune.structured] through the driver (Taylor importance on 16
        # training batches), scored right after removal, then the package's recovery distilled
        # from the dense proxy, what `run` does after the removal
        model, plan = make_variant(dense, VARIANTS[name], importance="taylor", train_ds=train_ds, tok=tok,
                                   batch_size=qa.batch_size, work_dir=work)
        before = sq.score(model.eval(), tok, data["eval"], qa)
        recover(model, tok, train_ds, sq.recovery_train_config(qa, a.seed),
                RecoveryConfig(recover_steps=a.recovery_steps, distill_alpha=0.5, distill_temperature=2.0),
                teacher=make_teacher(dense), output_dir=work / "trainer")
        after = sq.score(model.eval(), tok, data["eval"], qa)
        rec = {"shape": shape_label(model.config), "params": n_params(model),
               "before_kaggle": before["kaggle_score"], "kaggle_score": after["kaggle_score"],
               "rougeLsum": after["rougeLsum"], "seconds": round(time.time() - t0, 1),
               "empty": after.get("empty"), "example": after.get("example"),
               "plan": plan}
        q.setdefault("variants", {})[name] = rec
        save()
        log(f"  {name:<26} {rec['shape']}: course {before['kaggle_score']:.4f} after removal -> "
            f"{after['kaggle_score']:.4f} after {a.recovery_steps} KD steps "
            f"({pct(after['kaggle_score'], q['dense']['kaggle_score'])} of dense; {rec['empty']} empty "
            f"summaries) [{rec['seconds']} s]")


# ----------------------------------------------------------------------------- output


def write_outputs(results: dict, names: list[str], out: Path, a) -> str:
    sp = results.get("speed", {}).get("variants", {})
    q = results.get("quality", {})
    qd = q.get("dense")
    lines = []
    if "speed" in results:
        s = results["speed"]
        lines.append(f"Speed: random t5-small-shaped weights, {s['docs']} real BillSum docs (1024-token inputs), "
                     f"{s['new_tokens']} new tokens forced, batch {s['batch_size']}, {s['threads']} CPU threads, "
                     f"fastest of {s['reps']} interleaved rounds.")
    if qd:
        lines.append(f"Quality: the dense proxy of sparsity_quality.py ({qd['shape']}, {qd['params'] / 1e6:.2f}M params) scores "
                     f"{qd['kaggle_score']:.4f} (course) / {qd['rougeLsum']:.4f} (ROUGE-Lsum) on "
                     f"{q['settings']['eval_docs']} held-out docs; variants: Taylor importance, then "
                     f"{q['settings']['recovery_steps']} recovery steps with distillation from it.")
    lines += ["", "| variant | t5-small shape | params (M) | s/doc | speed-up | proxy shape | proxy course, removed | "
              "proxy course, recovered | % of dense | proxy ROUGE-Lsum | empty summaries |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        r = sp.get(name, {})
        v = (q.get("variants") or {}).get(name) if name != "dense" else None
        cells = [name, r.get("shape", "-"), f"{r['params'] / 1e6:.1f}" if r else "-",
                 f"{r['s_per_doc']:.3f}" if r else "-", f"{r['speedup']:.2f}x" if r.get("speedup") else "-"]
        if name == "dense" and qd:
            cells += [qd["shape"], "-", f"{qd['kaggle_score']:.4f}", "100%", f"{qd['rougeLsum']:.4f}",
                      str(qd.get("empty", "-"))]
        elif v and qd:
            cells += [v["shape"], f"{v['before_kaggle']:.4f}", f"{v['kaggle_score']:.4f}",
                      f"{pct(v['kaggle_score'], qd['kaggle_score'])}", f"{v['rougeLsum']:.4f}",
                      str(v.get("empty", "-"))]
        else:
            cells += ["-"] * 6
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    pts = [(n, sp[n]["speedup"], 100 * (q["variants"][n]["kaggle_score"] if n != "dense" else qd["kaggle_score"])
            / qd["kaggle_score"]) for n in names
           if n in sp and sp[n].get("speedup") and qd and qd["kaggle_score"] and (n == "dense" or n in q.get("variants", {}))]
    if pts:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 5))
        colour = lambda x, y: "tab:green" if x >= 2.5 and y >= 95 else "tab:red" if y < 50 else "tab:blue"  # noqa: E731
        ax.scatter([p[1] for p in pts], [p[2] for p in pts], c=[colour(x, y) for _, x, y in pts], zorder=3)
        # numbers at the points and the names in a key beside the axes: names at crowded points overlap
        ordered = sorted(pts, key=lambda p: p[1])
        for i, (n, x, y) in enumerate(ordered, 1):
            ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(4, 4 if i % 2 else -11), fontsize=8)
        key = "\n".join(f"{i:>2}  {n}  ({x:.2f}x, {y:.0f}%)" for i, (n, x, y) in enumerate(ordered, 1))
        fig.text(0.70, 0.5, key, fontsize=7.5, family="monospace", va="center")
        ax.axvline(2.5, color="tab:red", ls=":", lw=1, label="2.5x faster (target)")
        ax.axhline(95, color="k", ls=":", lw=1, label="95% of dense proxy score (target)")
        ax.set_xlabel("generation speed-up over dense t5-small shape (CPU, measured)")
        ax.set_ylabel("proxy course score, % of dense (after recovery)")
        ax.set_ylim(-8, max(115, max(p[2] for p in pts) + 8))
        ax.set_title("Structured variants: speed (t5-small shape) vs quality (proxy)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left")
        fig.tight_layout(rect=(0, 0, 0.69, 1))
        fig.savefig(out / "speed_quality.png", dpi=120)
        plt.close(fig)
    return table


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   help="variants to measure ('dense' is always added)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "billsum" / "us_test_sample.jsonl"))
    p.add_argument("--config-dir", default=str(ROOT.parent / "shared" / "t5-small"))
    p.add_argument("--docs", type=int, default=20)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16, help="generation batch (16: our default, see generate_speed)")
    p.add_argument("--reps", type=int, default=2, help="interleaved timing rounds; the fastest is kept")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--recovery-steps", type=int, default=400, help="proxy: KD recovery steps per variant")
    p.add_argument("--recover-lr", type=float, default=1e-3, help="proxy: recovery learning rate (issue-7 default)")
    p.add_argument("--seed", type=int, default=0, help="proxy: seed of the recovery's data order (repeat to see noise)")
    p.add_argument("--proxy-dir", default=str(ROOT / "runs" / "proxy_deep"),
                   help="a dense proxy trained by sparsity_quality.py (its meta.json gives its settings)")
    p.add_argument("--out", default=str(ROOT / "runs" / "structured_speed"))
    a = p.parse_args(argv)
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
    if not a.skip_speed:
        results["speed"] = run_speed(a, names)
        save()
    if not a.skip_quality:
        run_quality(a, names, results, save)
    table = write_outputs(results, names, out, a)
    print(table)
    sp = results.get("speed", {}).get("variants", {})
    q = results.get("quality", {})
    if sp and q.get("dense"):
        ok = [n for n in names if n != "dense" and n in sp and n in q.get("variants", {})
              and sp[n]["speedup"] >= 2.5 and q["variants"][n]["kaggle_score"] >= 0.95 * q["dense"]["kaggle_score"]]
        print(f"variants >= 2.5x faster keeping >= 95% of the dense proxy score: {', '.join(ok) or 'none'}")
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

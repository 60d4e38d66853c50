"""What int8 values cost: the compact int8 model against the compact fp16 model of the same pruned
checkpoint, on a base model (the synthetic proxy, or the yardstick with ``--base docs/results/yardstick``).

    python benchmarks/int8_quality.py                       # 0.3 and 0.1, seeds 0 1 2 (~30-40 min, 1 thread)
    python benchmarks/int8_quality.py --targets 0.3 --seeds 0 --recovery-steps 10   # a quick look

For each honest ``nonzero_ratio`` target and seed, the committed proxy (``docs/results/proxy/``)
is pruned by ``gradual_kd`` (cubic, uniform magnitude, distilled recovery: the cell of
``benchmarks/sparsity_quality.py`` with the same settings, through ``summprune.pipeline.prune_model``),
then exported with ``summprune.export.export_model(..., format="compact", dtype=...)`` as fp16 and
as int8, each loaded back with ``summprune.load_model`` (what generate_csv.py does) and scored on
the proxy's held-out bills with the course's decoding (greedy, max length 128): course score,
ROUGE-Lsum, the share of summaries identical to the fp16 model's, the honest ratio of each loaded
model and the size of each directory's model files.

``--base`` (alias ``--proxy``) as in ``benchmarks/sparsity_quality.py``: the yardstick's recoveries
draw from its corpus (``--corpus``) and it is scored on its held-out pairs; results and page name
the base (kind and sha256).

Outputs (``--out``, default ``docs/results/int8_quality/``): ``results.json`` (one record per
target and seed, written after each, so a stopped run resumes) and ``README.md`` (the table).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grid as G  # noqa: E402
import pages  # noqa: E402
import sparsity_quality as SQ  # noqa: E402

METHOD = "gradual_kd"
MODEL_FILES = ("compact.safetensors", "compact.json", "config.json")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=float, nargs="+", default=[0.3, 0.1], help="honest nonzero_ratio targets")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="recovery seeds (one pruned model each)")
    p.add_argument("--recovery-steps", type=int, default=100, help="recovery budget of each pruned model")
    p.add_argument("--eval-docs", type=int, default=100, help="held-out bills scored per model")
    G.add_base_arguments(p, "int8_quality", "the base model pruned")
    p.add_argument("--work", default=str(G.ROOT / "runs" / "int8_quality"), help="trainer scratch space")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--page-only", action="store_true", help="rewrite README.md from --out's results.json; prune nothing")
    p.add_argument("--steps", type=int, default=None, help="pruning steps (default: sparsity_quality.py's)")
    p.add_argument("--recovery-docs", type=int, default=None,
                   help="training bills the recoveries draw from (default: sparsity_quality.py's)")
    a = p.parse_args(argv)
    if a.out is None:
        a.out = str(G.default_out("int8_quality", a.base))
    # the pruning recipe: sparsity_quality.py's defaults, so a cell here is a cell there
    recipe = SQ.parse_args([])
    for k in ("steps", "final_recovery_frac", "recover_lr", "batch_size", "alpha", "temperature", "levels",
              "recovery_docs"):
        if getattr(a, k, None) is None:
            setattr(a, k, getattr(recipe, k))
    return a


def score(model, tok, rows, msl: int, prefix: str) -> tuple[dict, list[str]]:
    from summprune import sparsity as S
    from summprune.metrics import kaggle_score, rouge

    preds = G.generate(model.eval(), tok, [r["text"] for r in rows], msl, prefix)
    refs = [r["summary"] for r in rows]
    return {"kaggle_score": round(kaggle_score(preds, refs), 4), "rougeLsum": round(rouge(preds, refs)["rougeLsum"], 4),
            "nonzero_ratio": round(S.nonzero_ratio(model), 6)}, preds


def model_bytes(d: Path) -> int:
    return sum((d / f).stat().st_size for f in MODEL_FILES)


def run_cell(target: float, seed: int, dense, tok, train_ds, val_ds, rows, msl: int, prefix: str, a,
             cache: dict) -> dict:
    from summprune.export import export_model, load_model

    model, info = SQ.prune_cell(METHOD, target, seed, a.recovery_steps, dense, tok, train_ds, val_ds, a, cache,
                                Path(a.work))
    rec = {"target": target, "seed": seed, "recovery_steps": a.recovery_steps, "prune_s": info["prune_s"]}
    preds = {}
    with tempfile.TemporaryDirectory(prefix="int8_quality_") as tmp:
        for dt in ("fp16", "int8"):
            t = time.time()
            d = export_model(model, Path(tmp) / dt, format="compact", dtype=dt, tokenizer=tok)
            save_s = time.time() - t
            loaded = load_model(d)
            res, preds[dt] = score(loaded, tok, rows, msl, prefix)
            rec[dt] = {**res, "bytes": model_bytes(d), "save_s": round(save_s, 1)}
    rec["identical"] = round(sum(x == y for x, y in zip(preds["fp16"], preds["int8"])) / len(rows), 4)
    rec["int8_minus_fp16"] = round(rec["int8"]["kaggle_score"] - rec["fp16"]["kaggle_score"], 4)
    rec["example"] = {"fp16": preds["fp16"][0], "int8": preds["int8"][0]}
    return rec


def write_page(data: dict, out: Path, a) -> str:
    recs = data.get("records", [])
    st = data.get("settings", {})
    base = G.base_of(data)
    label = G.LABELS[base["kind"]]
    if base["kind"] == "proxy":
        what = (f"the synthetic proxy ({base.get('params', '?'):,} parameters, a copy-task model never pretrained)")
        rows_are = "bills"
    else:
        what = (f"the yardstick (`{base.get('dir')}/`, sha256 `{base.get('sha256', '?')[:16]}`, "
                f"{base.get('params', '?'):,} parameters, pretrained on real text and fine-tuned on docstring -> summary)")
        rows_are = "pairs"
    lines = [
        f"# What int8 values cost on the {label}",
        "",
        "Written by `benchmarks/int8_quality.py` from `results.json` (its docstring says what runs). Command:",
        "",
        "    " + data.get("command", "python benchmarks/int8_quality.py"),
        "",
        f"Each pruned model: {what} pruned by `{st.get('method', METHOD)}` to the honest target with "
        f"{st.get('recovery_steps', a.recovery_steps)} distilled recovery steps (the recipe of "
        "`benchmarks/sparsity_quality.py`), one model per seed; exported as compact fp16 and compact int8, "
        f"each loaded back and scored greedily (max length 128) on {data.get('settings', {}).get('eval_docs', '?')} "
        f"held-out {rows_are}."
        + (" **Magnitude** importance (`gradual_kd`), not the OBS that the recommended recipes "
           "(`configs/gradual_kd_030.toml`, `configs/gradual_kd.toml`) use: OBS updates the surviving weights, so "
           "its int8 cost may differ (not measured)." if st.get("method", METHOD) == "gradual_kd" else ""),
        "",
        "| target | seed | fp16 course score | int8 course score | int8 - fp16 | identical summaries | "
        "honest ratio fp16 / int8 | fp16 MB | int8 MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(recs, key=lambda r: (-r["target"], r["seed"])):
        lines.append(f"| {r['target']} | {r['seed']} | {r['fp16']['kaggle_score']:.4f} | {r['int8']['kaggle_score']:.4f} | "
                     f"{r['int8_minus_fp16']:+.4f} | {r['identical']:.0%} | {r['fp16']['nonzero_ratio']:.4f} / "
                     f"{r['int8']['nonzero_ratio']:.4f} | {r['fp16']['bytes'] / 1e6:.3f} | {r['int8']['bytes'] / 1e6:.3f} |")
    lines += ["", "Per target, mean [min-max] over seeds:", "",
              "| target | seeds | fp16 | int8 | int8 cost (% of fp16) | identical |", "|---|---|---|---|---|---|"]
    for t in sorted({r["target"] for r in recs}, reverse=True):
        rs = [r for r in recs if r["target"] == t]
        f, i = G.stats([r["fp16"]["kaggle_score"] for r in rs]), G.stats([r["int8"]["kaggle_score"] for r in rs])
        cost = [100 * (r["fp16"]["kaggle_score"] - r["int8"]["kaggle_score"]) / r["fp16"]["kaggle_score"]
                for r in rs if r["fp16"]["kaggle_score"]]
        c = G.stats(cost) if cost else None
        ident = G.stats([r["identical"] for r in rs])
        cost_s = f"{c['mean']:+.2f}% [{c['min']:+.2f}% to {c['max']:+.2f}%]" if c else "-"
        lines.append(f"| {t} | {len(rs)} | {G.fmt(f)} | {G.fmt(i)} | {cost_s} | {G.fmt(ident, 2)} |")
    lines += ["", f"A positive cost is int8 scoring below fp16. Sizes are the model files of the small {label}; "
              "t5-small's are in `docs/results/checkpoint_size/`.", ""]
    text = "\n".join(lines)
    (out / "README.md").write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.page_only:
        out = Path(a.out)
        print(write_page(json.loads((out / "results.json").read_text()), out, a))
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.time()
    dense, tok, meta, data = G.load_base(a.base, a.corpus)
    msl, prefix = meta["max_source_length"], meta["prefix"]
    rows = data["eval"][: a.eval_docs]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    # the proxy's key as before (its committed file stays valid); the yardstick's names it
    settings = {f"{meta['kind']}_sha256": meta["sha256"], "method": METHOD, "recovery_steps": a.recovery_steps,
                "eval_docs": len(rows), **{k: getattr(a, k) for k in ("steps", "final_recovery_frac", "recover_lr",
                                                                     "batch_size", "alpha", "temperature",
                                                                     "recovery_docs")}}
    store = G.Records(out / "results.json", settings)
    store.data["base"] = G.base_record(meta, a.base)
    if meta["kind"] == "proxy":
        store.data["proxy"] = {"params": meta["params"], "sha256": meta["sha256_full"]}
    else:
        store.data["base"]["checks"] = G.yardstick_checks(meta)
    store.data["versions"] = pages.versions()
    store.data["command"] = "python benchmarks/int8_quality.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    train_ds = G.to_dataset(data["train"][: a.recovery_docs], tok, msl, prefix, meta["max_target_length"])
    # (a tiny yardstick's corpus may hold no validation package: nothing then validates)
    val_ds = G.to_dataset(data["val"], tok, msl, prefix, meta["max_target_length"]) if data["val"] else None
    cache: dict = {}
    jobs = [(t, s) for t in a.targets for s in a.seeds]
    for i, (t, s) in enumerate(jobs):
        if store.find(target=t, seed=s, recovery_steps=a.recovery_steps) is not None:
            continue
        G.log(f"[{i + 1}/{len(jobs)}] {METHOD} @ {t} seed {s}, {a.recovery_steps} steps")
        rec = run_cell(t, s, dense, tok, train_ds, val_ds, rows, msl, prefix, a, cache)
        store.add(rec)
        G.log(f"    fp16 {rec['fp16']['kaggle_score']:.4f} int8 {rec['int8']['kaggle_score']:.4f} "
              f"identical {rec['identical']:.0%} [{rec['prune_s']} s]")
    print(write_page(store.data, out, a))
    G.log(f"done in {time.time() - t0:.0f} s; {out / 'results.json'}, {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

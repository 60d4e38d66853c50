"""Which decoding scores best on the course metric, and what it costs: greedy, 2/4/5 beams,
no-repeat 3-grams, repetition penalty 1.2, at max_length 64 and 128, on a trained model.

    python benchmarks/decoding_study.py                       # ~15 min on 2 cores
    python benchmarks/decoding_study.py --seeds 0 --docs 20   # a quick look

The model: until the validated proxy of the evidence issue exists, the offline smoke model
(``configs/smoke.toml``: tiny T5 trained on the synthetic BillSum-like corpus, then pruned in three
stages, as a student's submission is), trained once per seed (``train.seed``); ``runs/<out>/``
keeps each run, so a re-run reuses them. Scored on held-out documents of the synthetic test
split (never seen in training), through the package's own path (``generate_summaries`` with the
options generate_csv.py passes, then ``kaggle_score`` and ``rouge``). Every setting runs on the
same documents, in one process, one setting after another per seed.

It writes ``results.json`` (``{"records": [...]}``, one per seed and setting, written after each,
so an interrupted run resumes), ``table.md`` (mean and min-max over seeds) and ``decoding.png``
into ``--results`` (default ``docs/results/decoding/``).

What it cannot tell: the smoke model's summaries are short (at most ~62 tokens), so length
settings matter less than on BillSum, whose summaries run past 128 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: name -> decoding options (transformers' names); max_length is added per length.
SETTINGS: dict[str, dict] = {
    "greedy": {},
    "beams2": {"num_beams": 2},
    "beams4": {"num_beams": 4},
    "beams5": {"num_beams": 5},
    "greedy_norepeat3": {"no_repeat_ngram_size": 3},
    "greedy_reppen1.2": {"repetition_penalty": 1.2},
    "beams4_norepeat3": {"num_beams": 4, "no_repeat_ngram_size": 3},
    "beams5_norepeat3": {"num_beams": 5, "no_repeat_ngram_size": 3},
}
LENGTHS = (64, 128)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (one model each)")
    p.add_argument("--docs", type=int, default=100, help="held-out documents scored per setting")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    p.add_argument("--config", default=str(ROOT / "configs" / "smoke.toml"), help="the recipe trained per seed")
    p.add_argument("--runs", default="runs/decoding_study", help="where the trained runs are kept")
    p.add_argument("--results", default=str(ROOT / "docs" / "results" / "decoding"))
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true", help="ignore results.json (models are still reused)")
    p.add_argument("--page-only", action="store_true",
                   help="rewrite table.md, the plot and README.md from --results' results.json; run nothing")
    p.add_argument("overrides", nargs="*", help="key=value overrides of --config for training (e.g. train.epochs=1)")
    return p.parse_args(argv)


def train(config: str, seed: int, runs: Path, overrides: list[str]):
    """The run's exported model directory, training it first if absent (the package's run)."""
    from summprune.config import load_config
    from summprune.pipeline import run

    model_dir = runs / f"seed{seed}" / "model"
    if not (model_dir / "compact.json").is_file() and not (model_dir / "config.json").is_file():
        cfg = load_config(config, [f"name=seed{seed}", f"runs_dir={runs}", f"output_dir={model_dir}",
                                   f"train.seed={seed}", *overrides])
        run(cfg)
    return model_dir


def summarize(records: list[dict]) -> list[dict]:
    rows = []
    keys = sorted({(r["setting"], r["max_length"]) for r in records},
                  key=lambda k: (k[1], list(SETTINGS).index(k[0])))
    for setting, length in keys:
        rs = [r for r in records if r["setting"] == setting and r["max_length"] == length]
        row = {"setting": setting, "max_length": length, "seeds": len(rs)}
        for k in ("kaggle_score", "rougeLsum", "s_per_doc", "mean_words"):
            vals = [r[k] for r in rs]
            row[k] = (statistics.mean(vals), min(vals), max(vals))
        rows.append(row)
    return rows


def write_outputs(records: list[dict], out: Path, meta: dict) -> None:
    from summprune.io.files import write_json

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    write_json(tmp, {"meta": meta, "records": records})
    os.replace(tmp, out / "results.json")
    rows = summarize(records)
    lines = [f"Decoding study: {meta['model']}; {meta['docs']} held-out documents, seeds "
             f"{meta['seeds']}; mean (min-max over seeds). Command: `{meta['command']}`.", "",
             "| setting | max_length | seeds | course score | ROUGE-Lsum | s/doc | words/summary |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        f = lambda k, p=4: f"{r[k][0]:.{p}f} ({r[k][1]:.{p}f}-{r[k][2]:.{p}f})"
        lines.append(f"| {r['setting']} | {r['max_length']} | {r['seeds']} | {f('kaggle_score')} | "
                     f"{f('rougeLsum')} | {f('s_per_doc', 3)} | {r['mean_words'][0]:.1f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot(rows, out / "decoding.png")
    pages.write_readme(out, "Decoding study", "decoding_study.py", meta["command"], "\n".join(lines),
                       images=("decoding.png",),
                       settings={k: meta[k] for k in ("docs", "seeds", "max_source_length", "threads", "batch_size")
                                 if k in meta})


def plot(rows: list[dict], path: Path) -> None:
    """One row per setting: course score (mean, bar = min-max over seeds) per max_length, and the
    cost in s/doc written beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [s for s in SETTINGS if any(r["setting"] == s for r in rows)]
    lengths = sorted({r["max_length"] for r in rows})
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(settings) + 1.6))
    for j, length in enumerate(lengths):
        off = (j - (len(lengths) - 1) / 2) * 0.25
        for i, name in enumerate(settings):
            r = next((r for r in rows if r["setting"] == name and r["max_length"] == length), None)
            if r is None:
                continue
            y, lo, hi = r["kaggle_score"]
            ax.errorbar(y, i + off, xerr=[[y - lo], [hi - y]], fmt="os"[j % 2], color=f"C{j}", capsize=3,
                        label=f"max_length {length}" if i == 0 else None)
            ax.annotate(f"{r['s_per_doc'][0] * 1000:.0f} ms/doc", (hi, i + off), textcoords="offset points",
                        xytext=(6, -3), fontsize=7, color=f"C{j}")
    ax.set_yticks(range(len(settings)), settings)
    ax.invert_yaxis()
    ax.set_xlabel("course score on held-out documents (mean; bar: min-max over training seeds)")
    ax.set_title("Decoding on the smoke model (a proxy): score and cost per setting")
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.15)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    a = parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from summprune.data import load_split
    from summprune.export import load_model
    from summprune.config import load_config
    from summprune.generate import generate_summaries
    from summprune.metrics import kaggle_score, rouge
    from summprune.modeling import load_tokenizer

    if a.page_only:
        data = json.loads((Path(a.results) / "results.json").read_text())
        write_outputs(data["records"], Path(a.results), data["meta"])
        return 0
    cfg = load_config(a.config, a.overrides)
    out = Path(a.results)
    results_path = out / "results.json"
    records: list[dict] = []
    if results_path.is_file() and not a.fresh:
        records = json.loads(results_path.read_text())["records"]
    done = {(r["seed"], r["setting"], r["max_length"]) for r in records}
    test = load_split(cfg.data.dataset, "test", synthetic_docs=cfg.data.synthetic_docs, seed=cfg.data.seed)
    test = test.select(range(min(a.docs, len(test))))
    texts, refs = list(test["text"]), list(test["summary"])
    meta = {"model": f"{Path(a.config).name} (tiny T5, synthetic corpus, pruned in stages), one run per seed",
            "docs": len(texts), "seeds": a.seeds, "max_source_length": cfg.data.max_source_length,
            "threads": a.threads, "batch_size": a.batch_size,
            "command": "python benchmarks/decoding_study.py " + shlex.join(argv if argv is not None else sys.argv[1:])}
    for seed in a.seeds:
        model_dir = train(a.config, seed, Path(a.runs), a.overrides)
        model, tok = load_model(model_dir), load_tokenizer(model_dir)
        from summprune.pipeline import resolved_prefix

        for length in a.lengths:
            for name in a.settings:
                if (seed, name, length) in done:
                    continue
                dec = {"max_length": length, **SETTINGS[name]}
                t0 = time.perf_counter()
                preds = generate_summaries(model, tok, texts, prefix=resolved_prefix(cfg.data.prefix, model),
                                           max_source_length=cfg.data.max_source_length,
                                           batch_size=a.batch_size, progress=False, **dec)
                dt = time.perf_counter() - t0
                hyp = [preds[i] for i in range(len(texts))]
                rec = {"seed": seed, "setting": name, "max_length": length, "decoding": dec,
                       "kaggle_score": kaggle_score(hyp, refs), "rougeLsum": rouge(hyp, refs)["rougeLsum"],
                       "s_per_doc": dt / len(texts), "mean_words": statistics.mean(len(h.split()) for h in hyp),
                       "example": hyp[0][:200]}
                records.append(rec)
                print(f"seed {seed} {name:<18} max_length {length:>3}: course {rec['kaggle_score']:.4f} "
                      f"rougeLsum {rec['rougeLsum']:.4f} {rec['s_per_doc']:.3f} s/doc", flush=True)
                write_outputs(records, out, meta)
    write_outputs(records, out, meta)
    print(f"wrote {out}/results.json, table.md, decoding.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tables and figures of a run, read from ``runs/<name>/metrics.jsonl``.

Each figure answers one question at a glance and is saved as PNG next to the metrics:
- ``score_vs_ratio.png``: what did each stage cost? Score against the course's mask ratio and
  against the honest non-zero ratio, one point per stage.
- ``group_sparsity.png``: where did the zeros go? Non-zero fraction per layer group per stage.
- ``score_vs_max_length.png``: how much does the 128-token budget matter for the final model?
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; the notebook displays the saved PNGs
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

GROUP_LABELS = {
    "enc_self_attn": "enc self-attn", "enc_ffn": "enc FFN", "dec_self_attn": "dec self-attn",
    "cross_attn": "cross-attn", "dec_ffn": "dec FFN", "lm_head": "lm_head /\nembedding",
    "input_embedding": "input\nembedding",
}


def load_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def stage_rows(records: list[dict]) -> list[dict]:
    """The evaluated points of a run in order: initial, fine-tuned, then each stage."""
    out = []
    for r in records:
        if r.get("event") == "initial":
            out.append({**r, "label": "untrained" if any(x.get("event") == "finetuned" for x in records) else "start"})
        elif r.get("event") == "finetuned":
            out.append({**r, "label": "fine-tuned"})
        elif r.get("event") == "stage":
            out.append({**r, "label": f"stage {r['stage']}"})
    return out


def stage_table(records: list[dict]) -> pd.DataFrame:
    """One row per evaluated point: ratios, scores and per-group non-zero fractions."""
    rows = []
    for r in stage_rows(records):
        row = {"point": r["label"], "mask_ratio": r.get("mask_ratio"), "nonzero_ratio": r.get("nonzero_ratio"),
               "kaggle_score": r.get("kaggle_score"), "rougeLsum": r.get("rougeLsum")}
        for g, v in (r.get("groups") or {}).items():
            row[g] = v["nonzero_ratio"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("point")


def plot_score_vs_ratio(records: list[dict], path: str | Path, title: str = "") -> Path:
    pts = [r for r in stage_rows(records) if r["label"] != "untrained" and "kaggle_score" in r]
    same = all(abs(p["mask_ratio"] - p["nonzero_ratio"]) < 1e-4 for p in pts)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, key, name in zip(axes, ("kaggle_score", "rougeLsum"),
                             ("course metric (ROUGE-L recall)", "ROUGE-Lsum F1")):
        series = ([("nonzero_ratio", "s-", "honest non-zero ratio = course ratio (tied)")] if same else
                  [("mask_ratio", "o--", "vs course mask ratio"), ("nonzero_ratio", "s-", "vs honest non-zero ratio")])
        for ratio, style, lab in series:
            ax.plot([p[ratio] for p in pts], [p[key] for p in pts], style, label=lab, alpha=0.9)
        for p in pts:
            ax.annotate(p["label"].replace("stage ", "s"), (p["nonzero_ratio"], p[key]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        dense = [p for p in pts if p["label"] in ("fine-tuned", "start")]
        if dense:
            ax.axhline(dense[0][key], color="grey", lw=1, ls=":", label="dense model")
        ax.set_xlabel("fraction of weights kept (1.0 = dense; more compression to the right)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.set_title(name)
    # once: the panels share their x axis, so inverting each would invert it twice (back to normal)
    axes[0].invert_xaxis()
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(title or "Score after each pruning stage")
    fig.tight_layout()
    return _save(fig, path)


def plot_group_sparsity(records: list[dict], path: str | Path, title: str = "") -> Path:
    """Grouped bars: for each layer group, its non-zero fraction after each stage (light to dark)."""
    stages = [r for r in records if r.get("event") == "stage"]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    if stages:
        groups = list(stages[0]["groups"]) + ["model"]
        n = len(stages)
        width = 0.8 / n
        cmap = plt.get_cmap("Blues")
        for i, r in enumerate(stages):
            vals = [r["groups"][g]["nonzero_ratio"] for g in groups[:-1]] + [r["nonzero_ratio"]]
            xs = [j - 0.4 + width * (i + 0.5) for j in range(len(groups))]
            ax.bar(xs, vals, width, color=cmap(0.35 + 0.6 * i / max(n - 1, 1)), label=f"stage {r['stage']}")
        last = stages[-1]
        for j, g in enumerate(groups):
            v = last["nonzero_ratio"] if g == "model" else last["groups"][g]["nonzero_ratio"]
            ax.text(j + 0.4 - width / 2, v + 0.02, f"{v:.2f}", ha="center", fontsize=8)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([GROUP_LABELS.get(g, "whole model\n(honest)") for g in groups], fontsize=8)
        ax.legend(fontsize=8, ncol=min(n, 6), loc="upper right")
    ax.set_ylabel("fraction of weights non-zero")
    ax.set_ylim(0, 1.12)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title or "Non-zero weights per layer group after each stage (numbers: after the last stage)")
    fig.tight_layout()
    return _save(fig, path)


def plot_score_vs_max_length(results: dict[int, dict], path: str | Path, title: str = "") -> Path:
    lengths = sorted(results)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, lab in (("kaggle_score", "course metric"), ("rougeLsum", "ROUGE-Lsum")):
        ax.plot(lengths, [results[n][key] for n in lengths], "o-", label=lab)
    ax.set_xticks(lengths)
    ax.set_xlabel("generation max_length (tokens)")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "Final model: score against generation length")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

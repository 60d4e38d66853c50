"""What the notebook shows about a finished run: the stage table, the figures, a length sweep.

Kept out of the notebook so that every number it displays comes from code that tests cover.
"""

from __future__ import annotations

from pathlib import Path

from . import plots


def run_figures(run_dir: str | Path, title: str = "") -> dict[str, Path]:
    """Write score_vs_ratio.png and group_sparsity.png into the run folder; return their paths."""
    run_dir = Path(run_dir)
    records = plots.load_metrics(run_dir)
    return {
        "score_vs_ratio": plots.plot_score_vs_ratio(records, run_dir / "score_vs_ratio.png", title),
        "group_sparsity": plots.plot_group_sparsity(records, run_dir / "group_sparsity.png"),
    }


def stage_table(run_dir: str | Path):
    """The stages of a run as a DataFrame (ratios, scores, per-group non-zero fractions)."""
    return plots.stage_table(plots.load_metrics(run_dir))


def max_length_sweep(model, tokenizer, rows, lengths=(20, 50, 70, 100, 128), *, prefix: str = "summarize: ",
                     max_source_length: int = 1024, num_beams: int = 1, batch_size: int = 16,
                     progress=None) -> dict[int, dict]:
    """Score the model on ``rows`` (text, summary) at each generation ``max_length``."""
    from .evaluation import evaluate

    out = {}
    for n in lengths:
        out[n] = evaluate(model, tokenizer, rows, prefix=prefix, max_source_length=max_source_length,
                          max_length=n, num_beams=num_beams, batch_size=batch_size)
        if progress:
            progress(f"max_length={n}: kaggle={out[n]['kaggle_score']:.4f} rougeLsum={out[n]['rougeLsum']:.4f}")
    return out


def max_length_figure(results: dict[int, dict], path: str | Path) -> Path:
    return plots.plot_score_vs_max_length(results, path)

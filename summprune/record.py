"""What a prune records: one record per step (:func:`stage_record`), the content of
``pruning.json`` (:func:`pruning_info`) and the lines the log prints about the pruned model
(:func:`log_summary`)."""

from __future__ import annotations

from typing import Callable

from . import sparsity as S
from .config import ExperimentConfig, config_to_dict

PRUNING_FORMAT = "summprune.pruning/1"


def stage_record(model, patterns) -> dict:
    """The ratios and counts of ``model`` now, per group (``patterns``: the recipe's groups): what
    each step's record and ``pruning.json``'s ``final`` hold."""
    rep = S.report(model, patterns)
    return {"mask_ratio": rep["mask_ratio"], "nonzero_ratio": rep["nonzero_ratio"],
            "nonzero": rep["nonzero"], "dense_params": rep["dense_params"], "groups": rep["groups"]}


def log_summary(model, out_dir, original: dict, source: str, cfg: ExperimentConfig,
                log_print: Callable[[str], None]) -> None:
    """The pruned model's shape, parameters against ``original``, stored dtype and size (the
    ratios alone read 1.0 after a structural cut)."""
    from .summary import summarize, summary_lines

    if cfg.export_trim_vocab:  # the export is smaller than the model in memory: say what was written
        from .export import load_model

        model = load_model(out_dir)
        rec = model.config.summprune_vocab_trim
        log_print(f"[{cfg.name}] vocabulary trimmed to {rec['vocab_size']:,} of {rec['original_vocab_size']:,} "
                  f"tokens (the training split's; mapping in {out_dir}/{rec['file']})")
    for line in summary_lines(summarize(model, out_dir, original, source, cfg.prune.groups)):
        log_print(f"[{cfg.name}] {line}")


def pruning_info(cfg: ExperimentConfig, records: list[dict], final: dict, sections: dict | None = None,
                 original: dict | None = None, *, base_model: str | None = None, command: str | None = None,
                 quality: dict | None = None) -> dict:
    """What ``pruning.json`` holds: the recipe, one entry per step, the final model, what each
    method recorded (the gradual plan under ``gradual``, the removal under ``structured``) and
    ``original`` (:func:`summprune.summary.original_record` of the model pruning started from:
    what ``report`` compares with). After a structured removal ``final`` also gets
    ``nonzero_ratio_vs_original``: its non-zeros over the parameters of the model it was cut
    from (its own ratios count against the smaller shape). ``base_model`` (the model name or
    directory it started from), ``command`` (the command line that made it) and ``quality``
    (``before``: the scores of the model before pruning, on the same documents and decoding as
    ``final``'s) are recorded where given, for the model card (:mod:`summprune.card`)."""
    keep = ("stage", "method", "amounts", "mask_ratio", "nonzero_ratio", "nonzero", "dense_params", "groups",
            "kaggle_score", "rougeLsum")
    info = {
        "format": PRUNING_FORMAT,
        "tie_mode": cfg.prune.tie_mode,
        "recipe": config_to_dict(cfg.prune),
        "stages": [{k: r[k] for k in keep if k in r} for r in records],
        "final": final,
        # how the model reads its input: generate_csv.py's defaults for --prefix/--max-source-length
        "data": {"prefix": cfg.data.prefix, "max_source_length": cfg.data.max_source_length},
        **(sections or {}),
    }
    if original is not None:
        info["original"] = original
    for key, value in (("base_model", base_model), ("command", command), ("quality", quality)):
        if value is not None:
            info[key] = value
    if "structured" in info:
        final["nonzero_ratio_vs_original"] = final["nonzero"] / info["structured"]["params_before"]
    return info

"""Score a submission CSV: the course's Kaggle metric, ROUGE and, given a model, its sparsity.

    python score_result.py                       # submission.csv vs BillSum test (hub), and
                                                 # pruned_model/ when that directory exists
    python score_result.py --predictions out.csv --references ../shared/billsum/us_test_sample.jsonl --model none
    python score_result.py --predictions out.csv --references ../shared/billsum/us_test_sample.jsonl --limit 5

Prediction ID i is scored against reference row i (the row index of --references). The result
is a table on stdout and a JSON file with kaggle_score, rouge1, rouge2, rougeL, rougeLsum,
n_docs and, with a model, mask_ratio and nonzero_ratio (only the keys of the chosen --metrics);
for a structurally pruned model also nonzero_ratio_vs_original (non-zeros over the parameters of
the model it was cut from, from its pruning.json).
It also says whether the submission meets the course's constraints (JSON key ``course``): the
ratio as the course's grader computes it, which only a course directory (``model_state_dict.pth``,
``export_format = "course"``) gives, at most 0.3; and the course metric above its baseline 0.1134.
A bad CSV (no ID/Predict columns, duplicate, non-integer, missing or extra IDs, not UTF-8, an
unterminated quote) is an error naming the rows: exit status 2 and nothing written. So is a --json
that would replace an input (the predictions, the references, a file of the model).
A CSV of only the first N documents (``generate_csv.py --limit N``) is scored with ``--limit N``:
the first N references only, said on stdout and in the JSON (``limit``, ``n_references``); it is
a partial score, not comparable with one on every reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from summprune.io.files import atomic_write_json
from summprune.scripts import ArgumentParser, UsageError, run_script
from summprune.metrics import (DEFAULT_PREDICTIONS, MAX_FIELD_CHARS, ROUGE_TYPES, PredictionsError, kaggle_score,
                               read_predictions, rouge)

PROG = "score_result.py"
DEFAULT_MODEL = "pruned_model"
METRICS = ("kaggle", "rouge", "ratio")


def _warn(msg: str) -> None:
    print(f"{PROG}: warning: {msg}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--predictions", default=DEFAULT_PREDICTIONS, metavar="FILE",
                    help="submission CSV with header ID,Predict (default: %(default)s, what "
                         "generate_csv.py writes)")
    ap.add_argument("--references", default="billsum", metavar="billsum|PATH",
                    help="'billsum' (Hugging Face hub, needs the network) or a local "
                         "JSONL/CSV/parquet file (or a directory with <split>.jsonl) with a "
                         "'summary' column; its row index is the ID (default: %(default)s)")
    ap.add_argument("--split", default="test",
                    help="split of --references: test, ca_test or train for billsum, the file "
                         "name in a directory (default: %(default)s)")
    ap.add_argument("--model", default=None, metavar="DIR|none",
                    help=f"model directory for mask_ratio/nonzero_ratio (default: {DEFAULT_MODEL}/ "
                         "if it exists, else no model); 'none' disables")
    ap.add_argument("--json", default=None, metavar="FILE|none",
                    help="where to write the scores (default: beside the predictions, "
                         "<predictions stem>.scores.json, e.g. submission.scores.json); "
                         "'none' writes no file")
    ap.add_argument("--metrics", default=None, metavar="LIST",
                    help="comma-separated subset of kaggle,rouge,ratio (default: kaggle,rouge, "
                         "plus ratio when a model is given or found)")
    ap.add_argument("--limit", type=int, default=None, metavar="N",
                    help="score only the first N references (IDs 0..N-1), as generate_csv.py --limit N "
                         "writes them; predictions with a higher ID are left out, and the output says "
                         "so (default: every reference)")
    ap.add_argument("--workers", type=int, default=1, metavar="N",
                    help="processes for ROUGE, the slow part (5-10 ms of CPU a document, about "
                         "20-30 s for BillSum test on one core) (default: %(default)s)")
    return ap


def _choose_metrics(spec: str | None, model: Path | None) -> tuple[str, ...]:
    if spec is None:
        return METRICS if model is not None else METRICS[:2]
    chosen = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise UsageError(f"--metrics {spec!r}: choose from {','.join(METRICS)}")
    if "ratio" in chosen and model is None:
        raise UsageError(f"--metrics ratio needs a model: pass --model DIR (there is no {DEFAULT_MODEL}/ here)")
    return tuple(m for m in METRICS if m in chosen)


def _choose_model(arg: str | None) -> Path | None:
    if arg is None:
        return Path(DEFAULT_MODEL) if Path(DEFAULT_MODEL).is_dir() else None
    if arg.lower() == "none":
        return None
    if not Path(arg).is_dir():
        raise UsageError(f"--model {arg}: model directory not found (use --model none to score without one)")
    return Path(arg)


def model_ratios(model_dir: Path) -> tuple[dict[str, float], str]:
    """``{"mask_ratio", "nonzero_ratio"}`` of the model in ``model_dir`` and where mask_ratio
    came from. For a course directory (``model_state_dict.pth``) mask_ratio is the course's
    ratio as its grader computes it, on the model its code loads."""
    from summprune import sparsity
    from summprune.io.course import is_course_dir, load_course
    from summprune.export import load_model
    from summprune.io.hf import verify_checksums

    course_ratio = None
    try:
        if is_course_dir(model_dir):
            verify_checksums(model_dir)
            model, course_ratio = load_course(model_dir)
        else:
            model = load_model(model_dir)
    except (OSError, ValueError, RuntimeError) as e:
        raise UsageError(f"--model {model_dir}: cannot load the model: {e} (--model none scores "
                    "without one)") from None
    recorded = sparsity.recorded_mask_ratio(model_dir, warn=_warn)
    if course_ratio is not None:
        mask, source = course_ratio, "the course grader's code on model_state_dict.pth"
    elif recorded is not None:
        mask, source = recorded, "pruning.json final.mask_ratio"
    else:
        mask = sparsity.mask_ratio(model)
        has_masks = any(n.endswith("_mask") for n, _ in model.named_buffers())
        source = "the model's masks" if has_masks else "zero weights (no masks, no pruning.json)"
    ratios = {"mask_ratio": mask, "nonzero_ratio": sparsity.nonzero_ratio(model)}
    original = _original_params(model_dir)
    if original:
        # a structurally pruned model: its own ratios count against its smaller shape; this one
        # counts against the model it was cut from
        ratios["nonzero_ratio_vs_original"] = sparsity.nonzero_count(model) / original
    return ratios, source


def _original_params(model_dir: Path) -> int | None:
    """``structured.params_before`` of pruning.json (the dense parameter count before structured
    pruning), or None."""
    try:
        info = json.loads((Path(model_dir) / "pruning.json").read_text(encoding="utf-8"))
        value = info["structured"]["params_before"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _load_references(dataset: str, split: str) -> list[str]:
    from summprune.data import DataError, HubError, load_split

    try:
        ds = load_split(dataset, split, columns=("summary",), allow_empty=("summary",))
    except HubError as e:
        raise UsageError(f"--references {dataset} --split {split}: {e}, e.g. --references /data/billsum") from None
    except (DataError, OSError, ValueError) as e:
        hint = " (offline? pass --references PATH to a local file)" if dataset == "billsum" else ""
        raise UsageError(f"--references {dataset} --split {split}: {e}{hint}") from None
    return list(ds["summary"])


def _check_json_replaces_no_input(json_path: Path, predictions: Path, references: str, split: str,
                                  model: Path | None) -> None:
    """UsageError if writing the scores would replace the predictions, the references or a file of
    the model (e.g. ``--json submission.csv``, ``--json MODEL/config.json``)."""
    from summprune.data import DataError, resolve_local
    from summprune.io.files import check_not_input

    try:
        refs = resolve_local(references, split)
    except DataError:
        refs = None  # reported when the references are read
    try:
        check_not_input(json_path, {"--predictions": predictions, "--references": refs, "--model": model},
                        what="--json")
    except ValueError as e:
        raise UsageError(str(e)) from None


def course_verdict(scores: dict, model_dir: Path | None, source: str) -> tuple[dict, list[str]]:
    """Whether the submission meets the course's two constraints, as a JSON table and lines:
    the ratio its grader computes (<= 0.3; only a course directory can be read by it) and the
    course metric against the baseline. Either part is absent when its input is."""
    from summprune.io.course import BASELINE_SCORE, MAX_RATIO, STATE_FILE

    verdict: dict = {}
    lines = ["course constraints:"]
    if model_dir is not None and "mask_ratio" in scores:
        readable = source.startswith("the course grader")
        verdict.update(readable_by_grader=readable, max_ratio=MAX_RATIO)
        if readable:
            ok = scores["mask_ratio"] <= MAX_RATIO
            verdict.update(ratio=scores["mask_ratio"], ratio_ok=ok)
            lines.append(f"  ratio {scores['mask_ratio']:.4f} <= {MAX_RATIO}: {'yes' if ok else 'NO'}  (the grader's "
                         f"code on {model_dir / STATE_FILE}; honest nonzero_ratio {scores['nonzero_ratio']:.4f})")
        else:
            from summprune.export import FORMATS, family_refusal
            from summprune.models import family_of

            verdict.update(ratio=None, ratio_ok=False)
            try:
                refused = family_refusal("course", model_dir)
            except ValueError:  # no family claims its model_type: the loader has said so already
                refused = None
            from summprune.vocab import trim_refusal

            trimmed = trim_refusal("course", model_dir)
            if trimmed is not None:  # a trimmed vocabulary: no export makes it gradable either
                lines.append(f"  ratio: NOT READABLE by the grader: {model_dir}: {trimmed}")
            elif refused is not None:  # a BART, say: no export makes it gradable, so none is suggested
                lines.append(f"  ratio: NOT READABLE by the grader: {model_dir} is a {family_of(model_dir).name} "
                             f"model and {FORMATS['course'].families_why}")
            else:
                lines.append(f"  ratio: NOT READABLE by the grader: {model_dir} has no {STATE_FILE}; convert it with "
                             f"`python -m summprune export --model {model_dir} --output {model_dir}_course --format course`")
    if "kaggle_score" in scores:
        ok = scores["kaggle_score"] > BASELINE_SCORE
        verdict.update(baseline=BASELINE_SCORE, beats_baseline=ok)
        partial = scores.get("n_references", scores.get("n_docs", 0)) > scores.get("n_docs", 0)
        lines.append(f"  course metric {scores['kaggle_score']:.4f} > baseline {BASELINE_SCORE}: {'yes' if ok else 'NO'}"
                     + (f"  (on the first {scores['n_docs']} of {scores['n_references']} references only, --limit)"
                        if partial else ""))
    return verdict, (lines if len(lines) > 1 else [])


def _bounded(texts: list[str], what: str, name) -> list[str]:
    """``texts`` with each one longer than :data:`MAX_FIELD_CHARS` cut to that length, and a
    warning naming them (``name(i)``): scoring costs the product of the two texts' lengths, so a
    huge field would take minutes and gigabytes."""
    long = [i for i, t in enumerate(texts) if len(t) > MAX_FIELD_CHARS]
    if not long:
        return texts
    shown = ", ".join(f"{name(i)}: {len(texts[i]):,} characters" for i in long[:5])
    _warn(f"{len(long)} {what}(s) longer than {MAX_FIELD_CHARS:,} characters are scored on their first "
          f"{MAX_FIELD_CHARS:,} ({shown}{', ...' if len(long) > 5 else ''})")
    return [t[:MAX_FIELD_CHARS] if len(t) > MAX_FIELD_CHARS else t for t in texts]


def format_table(scores: dict, notes: dict[str, str]) -> str:
    lines = [f"{'metric':<15}{'value':>10}"]
    for k, v in scores.items():
        value = f"{v:>10d}" if isinstance(v, int) else f"{v:>10.4f}"
        lines.append(f"{k:<15}{value}" + (f"   ({notes[k]})" if k in notes else ""))
    return "\n".join(lines)


def _run(a: argparse.Namespace) -> int:
    model = _choose_model(a.model)
    metrics = _choose_metrics(a.metrics, model)
    if a.workers < 1:
        raise UsageError("--workers must be >= 1")
    if a.limit is not None and a.limit < 1:
        raise UsageError(f"--limit must be >= 1 (got {a.limit})")
    pred_path = Path(a.predictions)
    if a.json is None:
        json_path: Path | None = pred_path.with_name(pred_path.stem + ".scores.json")
    else:
        json_path = None if a.json.lower() == "none" else Path(a.json)
    if json_path is not None and not json_path.parent.is_dir():
        raise UsageError(f"--json {json_path}: directory {json_path.parent} does not exist")
    if json_path is not None:
        _check_json_replaces_no_input(json_path, pred_path, a.references, a.split, model)

    # Cheap checks first: the CSV's own structure, then the references, then the model.
    try:
        predictions = read_predictions(pred_path)
    except PredictionsError as e:
        raise UsageError(str(e)) from None
    references = _load_references(a.references, a.split)
    try:
        texts = predictions.aligned(len(references), a.limit)
    except PredictionsError as e:
        raise UsageError(str(e) + _limit_hint(a.limit, predictions, len(references))) from None
    n_refs = len(references)
    references = references[:len(texts)]
    texts = _bounded(texts, "prediction", lambda i: f"ID {i} (line {predictions.line_of[i]} of {pred_path})")
    references = _bounded(references, "reference", lambda i: f"row {i} of --references {a.references}")
    blank_refs = [i for i, r in enumerate(references) if not r.strip()]
    if blank_refs:
        _warn(f"{len(blank_refs)} reference(s) with an empty summary score 0 (row(s) "
              f"{', '.join(map(str, blank_refs[:10]))}{', ...' if len(blank_refs) > 10 else ''})")
    if predictions.empty_lines:
        lines = predictions.empty_lines
        _warn(f"{len(lines)} empty prediction(s) score 0 (line(s) {', '.join(map(str, lines[:10]))}"
              f"{', ...' if len(lines) > 10 else ''})")
    ratios, source = model_ratios(model) if "ratio" in metrics else ({}, "")

    scores: dict = {}
    if "kaggle" in metrics:
        scores["kaggle_score"] = kaggle_score(texts, references)
    if "rouge" in metrics:
        r = rouge(texts, references, workers=a.workers)
        scores.update({k: r[k] for k in ROUGE_TYPES})
    scores["n_docs"] = len(references)
    if a.limit is not None:
        scores.update(limit=a.limit, n_references=n_refs)
    scores.update(ratios)

    ref_name = f"{a.references}[{a.split}]" if a.references == "billsum" else a.references
    print(f"{pred_path} vs {ref_name}" + (f", model {model}" if ratios else ""))
    if a.limit is not None:
        print(_limit_line(a.limit, len(references), n_refs, predictions.beyond(len(references), n_refs)))
    print(format_table(scores, {"mask_ratio": source} if ratios else {}))
    if model is None:
        why = "--model none" if a.model is not None else f"there is no {DEFAULT_MODEL}/ here"
        print(f"mask_ratio, nonzero_ratio: not computed, they need the model: pass --model DIR ({why})")
    verdict, lines = course_verdict(scores, model if ratios else None, source)
    if lines:
        print("\n".join(lines))
        scores["course"] = verdict
    if json_path is not None:
        try:
            atomic_write_json(json_path, scores)
        except OSError as e:
            raise UsageError(f"--json {json_path}: cannot write: {e}") from None
        print(f"wrote {json_path}")
    return 0


def _limit_hint(limit: int | None, predictions, n_refs: int) -> str:
    """For a CSV refused for missing IDs without --limit: how to score the rows it holds."""
    if limit is not None:
        return ""
    k = predictions.leading_ids()
    if k is not None and k < n_refs:
        return (f"; it holds IDs 0..{k - 1} only, as `generate_csv.py --limit {k}` writes: "
                f"score those with --limit {k}")
    return "; a CSV of the first N documents (generate_csv.py --limit N) is scored with --limit N"


def _limit_line(limit: int, n: int, n_refs: int, beyond: int) -> str:
    """What --limit left out, said on stdout (never a silent partial score)."""
    line = f"--limit {limit}: scored the first {n} of the {n_refs} references (IDs 0..{n - 1})"
    if limit > n_refs:
        line += f" (there are only {n_refs})"
    if beyond:
        line += f"; {beyond} prediction(s) with a higher ID left out"
    if n < n_refs:
        line += f"; a partial score, not comparable with one on all {n_refs}"
    return line


def main(argv: list[str] | None = None) -> int:
    return run_script(PROG, _parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Write the course submission CSV: one summary per test document.

    python generate_csv.py                                   # pruned_model/ on BillSum test
    python generate_csv.py --data ../shared/billsum/us_test_sample.jsonl --limit 5
    python generate_csv.py --dtype bf16                      # faster, may differ from fp32

Output: header ``ID,Predict``, every field quoted, UTF-8, ``ID`` = 0-based row index of the
data, commas in summaries replaced by periods and line breaks by spaces, rows in ID order.

Interruptible: finished rows are appended to ``<output>.partial.jsonl`` after every batch, and
``<output>.partial.meta.json`` records the arguments that affect the outputs. Re-running the same
command resumes where it stopped; with different arguments it starts over. The CSV appears
(atomically) only when every document is done, and then the sidecar files are removed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

PROG = "generate_csv.py"
MODEL_HINT = ("make one with `python -m summprune run configs/seed.toml` (or the notebook), "
              "or pass --model DIR")
#: Files a model directory needs: config.json and the weights of either format.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "compact.json")
META_VERSION = 1


class UsageError(Exception):
    """A bad argument or input: reported as ``generate_csv.py: error: ...``, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # raise instead of sys.exit so main() returns 2 in-process
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    from summprune.generate import DTYPES
    from summprune.metrics import DEFAULT_PREDICTIONS

    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0],
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="pruned_model",
                   help="model directory (hf or compact format, tokenizer inside)")
    p.add_argument("--data", default="billsum",
                   help="'billsum' (hub), a JSONL/CSV/parquet file with a text column, or a directory with <split>.jsonl")
    p.add_argument("--split", default="test", help="split to read")
    p.add_argument("--output", default=DEFAULT_PREDICTIONS, help="CSV to write")
    p.add_argument("--max-length", type=int, default=128,
                   help="generate max_length: decoder length including the start token (course: 128)")
    p.add_argument("--num-beams", type=int, default=1, help="1 = greedy (course setting)")
    p.add_argument("--batch-size", type=int, default=16, help="documents per generate call")
    p.add_argument("--limit", type=int, default=None, help="only the first N documents")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="fp32", choices=DTYPES,
                   help="fp32 = exact; bf16 (CPU autocast / GPU), fp16 (GPU) and int8 (CPU) are faster "
                        "but may change some summaries")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's, one per core); on a machine shared "
                        "with other jobs, fewer threads than cores avoids stalls")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def check_model_dir(path: str) -> Path:
    d = Path(path).expanduser()
    if not d.is_dir():
        what = "is a file, not a directory" if d.exists() else "not found"
        raise UsageError(f"model directory {what}: {d}; {MODEL_HINT}")
    missing = []
    if not (d / "config.json").is_file():
        missing.append("config.json")
    if not any((d / f).is_file() for f in WEIGHT_FILES):
        missing.append("model.safetensors or compact.json")
    if missing:
        raise UsageError(f"{d}: missing {' and '.join(missing)}; is this a model directory? {MODEL_HINT}")
    return d


def fingerprint_files(paths: list[Path]) -> str:
    """Cheap identity of files: names, sizes and modification times (no reading)."""
    h = hashlib.sha256()
    for f in sorted(paths):
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def run_meta(args, model_dir: Path, n_docs: int) -> dict:
    """Everything that decides the outputs; a resumed run must match it exactly."""
    from summprune.config import DataConfig
    from summprune.data import resolve_local

    local = resolve_local(args.data, args.split)
    defaults = DataConfig()
    return {
        "version": META_VERSION,
        "model": str(model_dir.resolve()),
        "model_fingerprint": fingerprint_files([f for f in model_dir.rglob("*") if f.is_file()]),
        "data": str(local.resolve()) if local is not None else args.data,
        "data_fingerprint": fingerprint_files([local]) if local is not None else None,
        "split": args.split,
        "limit": args.limit,
        "docs": n_docs,
        "prefix": defaults.prefix,
        "max_source_length": defaults.max_source_length,
        "max_length": args.max_length,
        "num_beams": args.num_beams,
        "dtype": args.dtype,
    }


def read_partial(path: Path, n_docs: int) -> dict[int, str]:
    """Rows saved by an interrupted run; a torn last line (killed mid-write) is dropped."""
    done: dict[int, str] = {}
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
                i, pred = rec["id"], rec["prediction"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if isinstance(i, int) and 0 <= i < n_docs and isinstance(pred, str):
                done[i] = pred
    return done


def write_csv(path: Path, predictions: dict[int, str]) -> None:
    """Course format, written to a temp file in the same directory and renamed into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
            w.writerow(["ID", "Predict"])
            for i in sorted(predictions):
                w.writerow([i, predictions[i]])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    try:
        return run(args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    from summprune import generate as gen
    from summprune.data import DataError, load_split

    # Cheap checks first: nothing is loaded or written before all of them pass.
    for name in ("max_length", "num_beams", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(args, name)})")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1 (got {args.limit})")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1 (got {args.threads})")
    try:
        device = gen.check_dtype(gen.resolve_device(args.device), args.dtype)
    except ValueError as e:
        raise UsageError(f"--device {args.device} --dtype {args.dtype}: {e}") from None
    model_dir = check_model_dir(args.model)
    output = Path(args.output).expanduser()
    if output.is_dir():
        raise UsageError(f"--output {output} is a directory; give a file name")
    if not output.parent.is_dir():
        raise UsageError(f"--output: directory {output.parent} does not exist")
    try:
        ds = load_split(args.data, args.split, columns=("text",))
    except DataError as e:
        raise UsageError(f"--data: {e}") from None
    except Exception as e:  # e.g. the hub unreachable offline
        raise UsageError(f"--data {args.data!r} split {args.split!r}: cannot load ({type(e).__name__}: {e}); "
                         "offline, pass a local JSONL/CSV/parquet file with a text column") from None
    if args.limit is not None and args.limit < len(ds):
        ds = ds.select(range(args.limit))
    texts = list(ds["text"])
    n = len(texts)

    partial = output.with_name(output.name + ".partial.jsonl")
    meta_path = output.with_name(output.name + ".partial.meta.json")
    meta = run_meta(args, model_dir, n)
    done: dict[int, str] = {}
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if old == meta:
            done = read_partial(partial, n)
            print(f"resuming: {len(done)} of {n} done (from {partial})", file=sys.stderr)
        else:
            changed = sorted(k for k in meta if not isinstance(old, dict) or old.get(k) != meta[k])
            print(f"found an interrupted run with different arguments ({', '.join(changed)}); starting over",
                  file=sys.stderr)

    model = tokenizer = None
    if len(done) < n:
        import torch

        from summprune.export import load_model
        from summprune.modeling import load_tokenizer

        if args.threads:
            torch.set_num_threads(args.threads)

        try:
            model = load_model(model_dir)
            tokenizer = load_tokenizer(model_dir)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot load the model in {model_dir}: {e}") from None

    # The sidecar holds exactly the rows kept (this drops a torn last line or a stale run).
    tmp = partial.with_name(partial.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in sorted(done.items()))
    os.replace(tmp, partial)
    meta_path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if model is not None:
        try:
            with partial.open("a", encoding="utf-8") as f:
                def save(ids: list[int], summaries: list[str]) -> None:
                    for i, s in zip(ids, summaries):
                        done[i] = gen.clean_prediction(s)
                        f.write(json.dumps({"id": i, "prediction": done[i]}) + "\n")
                    f.flush()
                    os.fsync(f.fileno())

                gen.generate_summaries(model, tokenizer, texts, prefix=meta["prefix"],
                                       max_source_length=meta["max_source_length"],
                                       max_length=args.max_length, num_beams=args.num_beams,
                                       batch_size=args.batch_size, device=device, dtype=args.dtype,
                                       on_batch=save, skip_ids=set(done), progress=not args.no_progress)
        except KeyboardInterrupt:
            print(f"\ninterrupted: {len(done)} of {n} documents saved in {partial}; "
                  "re-run the same command to resume", file=sys.stderr)
            return 130
    write_csv(output, done)
    partial.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
    print(f"wrote {output} ({n} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

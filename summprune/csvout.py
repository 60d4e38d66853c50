"""The course CSV that ``generate_csv.py`` writes, and the files beside it that make it resumable.

Beside ``<output>`` (:func:`sidecars`): ``<output>.lock`` while it is written,
``<output>.partial.jsonl`` (the finished rows, appended after every batch) with
``<output>.partial.meta.json`` (the arguments that decide them, :func:`run_meta`), and, once the
CSV is complete, ``<output>.meta.json``: those arguments and the CSV's digest, sealed
(:func:`summprune.io.files.seal`) and checked (:func:`finished_state`) as every cache entry is.

:func:`resume` decides what an interrupted run's rows are worth (kept, refused, or started
over), :func:`generate_rows` appends new ones as they come, :func:`finish` writes the CSV
atomically and removes the partial files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable, NamedTuple

from . import generate as gen
from .io.files import atomic_write, atomic_write_json, check_seal, seal, sha256_file

class WriteError(OSError):
    """A file of the output that cannot be written; the message names ``--output`` and what of
    the work is kept."""


META_VERSION = 3  # 2: the decoding options as one "decoding" table; 3: engine, inputs from the model


class Sidecars(NamedTuple):
    """The files written beside an output CSV."""

    lock: Path
    partial: Path  # the finished rows
    meta: Path  # the arguments of those rows
    record: Path  # the arguments and digest of a finished CSV


def sidecars(output: Path) -> Sidecars:
    return Sidecars(*(output.with_name(output.name + suffix)
                      for suffix in (".lock", ".partial.jsonl", ".partial.meta.json", ".meta.json")))


def fingerprint_files(paths: list[Path]) -> str:
    """Cheap identity of files: names, sizes and modification times (no reading)."""
    h = hashlib.sha256()
    for f in sorted(paths):
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def run_meta(*, model_dir: Path, output: Path, data: str, local: Path | None, split: str, limit: int | None,
             n_docs: int, inputs: dict, decoding: dict, dtype: str, engine: str) -> dict:
    """Everything that decides the rows (``local``: the data file ``data`` names, None for the
    hub); a resumed run must match it exactly."""
    return {
        "version": META_VERSION,
        "model": str(model_dir.resolve()),
        # the model's files, not this run's own lock and sidecars when the output is inside the model dir
        "model_fingerprint": fingerprint_files([f for f in model_dir.rglob("*") if f.is_file()
                                                and not f.name.startswith(output.name)]),
        "data": str(local.resolve()) if local is not None else data,
        "data_fingerprint": fingerprint_files([local]) if local is not None else None,
        "split": split,
        "limit": limit,
        "docs": n_docs,
        "prefix": inputs["prefix"],
        "max_source_length": inputs["max_source_length"],
        "decoding": decoding,
        "dtype": dtype,
        "engine": engine,
    }


def read_partial(path: Path, n_docs: int) -> dict[int, str]:
    """Rows saved by an interrupted run; a torn last line (killed mid-write) is dropped. Each
    summary is cleaned as a fresh one is (a hand-edited file may hold commas and line breaks,
    which the CSV must not)."""
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
            if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_docs and isinstance(pred, str):
                done[i] = gen.clean_prediction(pred)
    return done


def write_csv(path: Path, predictions: dict[int, str]) -> None:
    """Course format, written atomically (a temp file in the same directory, renamed into place)."""
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    w.writerow(["ID", "Predict"])
    for i in sorted(predictions):
        w.writerow([i, predictions[i]])
    atomic_write(path, buf.getvalue())


#: A finished CSV's record from before records were sealed: its digest under this key.
LEGACY_DIGEST = "csv_sha256"


def finished_state(output: Path, meta: dict) -> str | None:
    """None when ``output`` is the finished CSV of exactly ``meta`` (its record says so and the
    CSV is unchanged since); else why it must be generated again."""
    record = sidecars(output).record
    try:
        old = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and "sha256" not in old and isinstance(old.get(LEGACY_DIGEST), str):
        # recorded before records were sealed: the same digest, as check_seal reads it (a CSV
        # that took hours with beams is not generated again for that)
        atomic_write_json(record, {**old, "sha256": {output.name: old[LEGACY_DIGEST]}})
    return check_seal(record, output.parent, meta, required=(output.name,), what="arguments")


def resume(output: Path, meta: dict, n_docs: int, *, restart: bool, engine_auto: bool, device,
           log: Callable[[str], None]) -> tuple[dict[int, str], dict]:
    """The rows an interrupted run of ``output`` left that these arguments (``meta``) can keep,
    and ``meta`` as it goes on. ``engine_auto`` (``--engine auto``): rows made with torch (its
    fallback where ctranslate2 could not convert the model) are continued with torch, one engine
    per CSV. Rows of other arguments are started over (said with ``log``); rows of another
    decoding, engine or dtype are refused (ValueError) unless ``restart``: never thrown away
    unasked (hours with beams), never mixed with others in one CSV."""
    side = sidecars(output)
    if not side.meta.is_file():
        return {}, meta
    try:
        old = json.loads(side.meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        old = None
    if isinstance(old, dict) and engine_auto and old.get("engine") == "torch" != meta["engine"]:
        try:
            gen.ENGINES["torch"].check(device, meta["dtype"])
        except ValueError:
            pass
        else:
            meta = {**meta, "engine": "torch"}
            log("engine: torch (the interrupted run's)")
    if isinstance(old, dict) and not restart:
        old_dec, decoding = old.get("decoding"), meta["decoding"]
        diff = []
        if isinstance(old_dec, dict) and old_dec != decoding:
            diff += [f"{k} {old_dec.get(k)!r} (now {decoding[k]!r})" for k in decoding if old_dec.get(k) != decoding[k]]
        diff += [f"{k} {old[k]!r} (now {meta[k]!r})" for k in ("engine", "dtype") if k in old and old[k] != meta[k]]
        if diff:
            raise ValueError(f"{output} has an interrupted run made with another decoding or engine: "
                             f"{', '.join(diff)}; run with those options to resume it, or add --restart to discard it")
    if old == meta:
        done = read_partial(side.partial, n_docs)
        log(f"resuming: {len(done)} of {n_docs} done (from {side.partial})")
        return done, meta
    changed = sorted(k for k in meta if not isinstance(old, dict) or old.get(k) != meta[k])
    log(f"found an interrupted run with different arguments ({', '.join(changed)}); starting over")
    return {}, meta


def start_partial(output: Path, done: dict[int, str], meta: dict) -> None:
    """The partial files as the run goes on from: exactly the rows kept (a torn last line or a
    stale run dropped) and their arguments; WriteError naming ``--output`` where they cannot be written."""
    side = sidecars(output)
    try:
        atomic_write(side.partial, "".join(json.dumps({"id": i, "prediction": p}) + "\n"
                                           for i, p in sorted(done.items())))
        atomic_write(side.meta, json.dumps(meta, indent=1))
    except OSError as e:
        raise WriteError(f"--output {output}: cannot write beside it ({e.strerror or e}: "
                      f"{e.filename or side.partial})") from None


def generate_rows(model, tokenizer, texts: list[str], done: dict[int, str], output: Path, *, meta: dict,
                  batch_size: int, device, progress: bool) -> None:
    """Generate the rows not in ``done`` (with ``meta``'s inputs, decoding and dtype), each batch
    cleaned, added to ``done`` and appended to the partial file (synced) as it comes: a kill or a
    Ctrl-C (KeyboardInterrupt, passed on) loses at most the batch in progress. A write the disk
    refuses is a WriteError saying how many rows are saved and that the same command resumes."""
    partial = sidecars(output).partial
    # unbuffered: a write the disk refuses fails here, in save, and nothing is left in a buffer
    # for close() to fail on again (a raw OSError that hid the message below)
    with partial.open("ab", buffering=0) as f:
        def save(ids: list[int], summaries: list[str]) -> None:
            rows = [(i, gen.clean_prediction(s)) for i, s in zip(ids, summaries)]
            try:
                data = memoryview("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in rows)
                                  .encode("utf-8"))
                while data:  # a raw write may take part of it
                    data = data[f.write(data):]
                os.fsync(f.fileno())
            except OSError as e:  # a full disk: the rows saved before this batch stay resumable
                raise WriteError(f"--output {output}: cannot save progress to {partial} ({e.strerror or e}); "
                              f"{len(done)} of {len(texts)} summaries are saved there: free space and run the "
                              "same command again to resume") from None
            done.update(rows)

        gen.generate_summaries(model, tokenizer, texts, prefix=meta["prefix"],
                               max_source_length=meta["max_source_length"], **meta["decoding"],
                               batch_size=batch_size, device=device, dtype=meta["dtype"], on_batch=save,
                               skip_ids=set(done), progress=progress)


def finish(output: Path, done: dict[int, str], meta: dict) -> None:
    """The CSV of ``done``, written atomically, its record sealed beside it (the arguments and the
    CSV's digest), then the partial files removed. WriteError naming ``--output`` where it cannot
    be written (the rows stay in the partial file)."""
    side = sidecars(output)
    try:
        side.record.unlink(missing_ok=True)  # the old CSV's record: never left beside a new CSV
        write_csv(output, done)
        # the digest also under its old key: the record stays what older versions read
        seal(side.record, output.parent, [output.name], {**meta, LEGACY_DIGEST: sha256_file(output)})
    except OSError as e:
        raise WriteError(f"--output {output}: cannot write ({e.strerror or e}); the {len(done)} summaries are kept in "
                      f"{side.partial}: fix the path and run the same command again") from None
    side.partial.unlink(missing_ok=True)
    side.meta.unlink(missing_ok=True)

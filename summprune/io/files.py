"""Filesystem helpers every writer uses: atomic files and directories, JSON, checksums.

``atomic_write`` and ``atomic_dir`` write into a temporary sibling and rename it into place, so a
reader never sees a half-written file and a failure leaves the old one as it was; files get the
mode a plain ``open`` would give them (``mkstemp`` alone makes them 0600).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import faults

#: Pickle-based checkpoint suffixes: never written, except the names ``atomic_dir`` is told to allow.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def cache_dir(kind: str) -> Path:
    """``$SUMMPRUNE_CACHE/<kind>`` (default ``~/.cache/summprune/<kind>``): work kept between runs
    and keyed by content (CTranslate2 conversions, teacher summaries)."""
    return Path(os.environ.get("SUMMPRUNE_CACHE", Path.home() / ".cache" / "summprune")).expanduser() / kind


def _is_model_dir(d: Path) -> bool:
    # the formats registry knows each format's weight files (it sits below this module; the
    # formats, above it, fill it: summprune.io.formats)
    from .formats import is_model_dir

    return is_model_dir(d)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync and rename;
    the file gets the mode ``open(path, "w")`` would give it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode(encoding) if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def check_output(out_dir: str | Path) -> Path:
    """Refuse outputs that replacing could destroy: a file, cwd or one of its parents, a
    non-empty directory that is not a model directory."""
    out = Path(out_dir).expanduser()
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise FileExistsError(f"{out}: exists and is not a directory; refusing to replace it")
        res = out.resolve()
        cwd = Path.cwd().resolve()
        if res == cwd or res in cwd.parents:
            raise ValueError(f"{out}: is the current directory or one of its parents; choose a new output directory")
        if any(out.iterdir()) and not _is_model_dir(out):
            raise FileExistsError(f"{out}: exists, is not empty and is not a model directory "
                                  "(no config.json / compact.json); refusing to replace it")
    return out


@contextmanager
def atomic_dir(out: Path, allow: tuple[str, ...] = (), fault: str | None = None) -> Iterator[Path]:
    """Yield a fresh sibling temp dir; on success it replaces ``out``, on error it is removed.
    A pickle-format file in it is an error, except the names in ``allow`` (the course format's
    ``model_state_dict.pth``). ``fault`` names the fault-injection point (summprune.faults) reached
    when the files are written, before the swap. A write the file system refuses (no space, quota,
    read-only) is re-raised as an OSError whose message names ``out``: the writers' own name the
    temp dir at most, or nothing at all."""
    import errno

    def write_failure(e: BaseException) -> OSError | None:
        # safetensors' SafetensorError reports ENOSPC as text, "I/O error: No space left on device
        # (os error 28)"; torch.save's zip writer as a RuntimeError "[enforce fail at
        # inline_container.cc:...] . unexpected pos 576 vs 534" (a short write).
        if isinstance(e, OSError):
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
                return None
            code, reason = e.errno, os.strerror(e.errno)
        elif isinstance(e, Exception):
            codes = {os.strerror(c): c for c in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)}
            m = re.search("|".join(map(re.escape, codes)), str(e))
            if m:
                code, reason = codes[m.group(0)], m.group(0)
            elif re.search(r"unexpected pos \d+ vs \d+", str(e)):
                code, reason = None, "a short write, e.g. the disk is full"
            else:
                return None
        else:
            return None
        kept = "the previous copy is unchanged" if out.exists() else "nothing was written"
        hint = (f"; free some space on the file system of {out.parent}"
                if code in (errno.ENOSPC, errno.EDQUOT, None) else "")
        err = OSError(f"{out}: cannot be written ({reason}); {kept}{hint}")
        err.errno = code
        return err

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_siblings(out)
        while True:
            # the pid in the name tells a later export whether its writer is still alive
            tmp = out.parent / f"{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                tmp.mkdir()
                break
            except FileExistsError:
                continue
    except OSError as e:
        failure = write_failure(e)
        if failure is None:
            raise
        raise failure from e
    try:
        yield tmp
        pickles = [p.name for p in tmp.rglob("*") if p.suffix in PICKLE_SUFFIXES and p.name not in allow]
        if pickles:
            raise RuntimeError(f"refusing to write pickle-format file(s) {pickles} to {out}")
        _fsync_tree(tmp)
        if fault:
            faults.point(fault)
        mode = 0o666 & ~_umask()
        for f in tmp.rglob("*"):  # safetensors writes 0600 (mkstemp); give files a normal file's mode
            if f.is_file():
                os.chmod(f, mode)
        _swap_in(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        failure = write_failure(e)
        if failure is None:
            raise
        raise failure from e


def _remove_stale_siblings(out: Path) -> None:
    """Remove ``<out>.tmp-<pid>-*`` / ``<out>.old-<pid>-*`` left by a writer that was killed (its
    pid no longer alive): a kill -9 mid-export leaves its temp directory behind."""
    pattern = re.compile(re.escape(out.name) + r"\.(tmp|old)-(\d+)-[0-9a-f]{8}")
    stale = [(m.group(1), p) for p in out.parent.glob(f"{out.name}.*-*-*")
             if (m := pattern.fullmatch(p.name)) and p.is_dir() and not _alive(int(m.group(2)))]
    olds = [p for kind, p in stale if kind == "old"]
    if olds and not out.exists():
        # killed between the two renames of a swap: the previous, complete copy goes back in place
        os.rename(max(olds, key=lambda p: p.stat().st_mtime), out)
    for _, p in stale:
        if p.exists():
            shutil.rmtree(p, ignore_errors=True)


def _swap_in(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.parent / f"{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(d: Path) -> None:
    for f in d.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def json_default(o: Any) -> Any:
    import numpy as np
    import torch

    if isinstance(o, torch.Tensor) and o.numel() == 1:
        return o.item()
    if isinstance(o, (np.generic,)):
        return o.item()
    if isinstance(o, (torch.Tensor, np.ndarray)):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=json_default) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the file is truncated or corrupt") from None


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def file_digests(root: str | Path, names: Iterable[str] | None = None, *,
                 follow_symlinks: bool = True) -> dict[str, str]:
    """``{name: sha256}`` of the files ``root/name`` (``names`` relative to ``root``; default: every
    file under it, recursively): the fingerprint a prune work folder keeps of the model it started
    from and of each step's state, and every cache entry of what it holds, checked again before
    use, so that content, not a path, decides what is reused. With ``follow_symlinks=False`` (a
    cache entry: its files are ours, never links) a symlink is a ValueError naming it, as is a
    name that is not a regular file."""
    root = Path(root)
    if names is None:
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                       if p.is_symlink() or not p.is_dir())
    out = {}
    for name in names:
        f = root / name
        if not follow_symlinks and f.is_symlink():
            raise ValueError(f"{f}: a symlink (to {os.readlink(f)}); refusing to read it as ours")
        if not f.is_file():
            raise ValueError(f"{f}: not a regular file")
        out[name] = sha256_file(f)
    return out


def changed_files(recorded: Any, actual: dict[str, str]) -> list[str]:
    """The names whose digest differs between ``recorded`` (as read back from a file: anything)
    and ``actual`` (:func:`file_digests`), a name present in one only included; ``["(none
    recorded)"]`` when ``recorded`` is not a ``{name: digest}`` table."""
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        return ["(none recorded)"]
    return sorted(n for n in set(recorded) | set(actual) if recorded.get(n) != actual.get(n))


def seal(manifest: Path, root: Path, names: Iterable[str] | None, identity: dict) -> None:
    """Write ``manifest`` (atomically): ``identity`` (what the entry is for: its cache key, its
    position) and the :func:`file_digests` of ``root/names`` (None: every file under ``root``);
    :func:`check_seal` verifies it."""
    atomic_write_json(manifest, {**identity, "sha256": file_digests(root, names, follow_symlinks=False)})


def check_seal(manifest: Path, root: Path, identity: dict, required: Iterable[str] = (),
               what: str | None = None) -> str | None:
    """None when ``manifest`` (written by :func:`seal`) records ``identity`` and the digests of the
    files as they are now (``required`` names among them); otherwise why not, in words: a cache
    entry must hold what its key names, not whatever well-formed files sit at its path, and a
    finished output is made again unless it is the one these arguments make. ``what``: what
    ``identity`` is, where the reasons should name it ("arguments": a finished CSV's)."""
    if manifest.is_symlink():
        return f"{manifest.name} is a symlink"
    if not manifest.is_file():
        return (f"no record of the {what} it was made with ({manifest.name})" if what else
                f"it has no {manifest.name} recording its digests (written by an older version, or interrupted)")
    try:
        rec = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return f"its record {manifest.name} is unreadable"
    if not isinstance(rec, dict):
        return f"its record {manifest.name} is not a JSON object"
    other = sorted(k for k in identity if rec.get(k) != identity[k])
    if other:
        values = ", ".join(f"{k}={rec.get(k)!r}" for k in other)
        return (f"made with other {what}: {', '.join(other)}" if what else
                f"it was written for another {', '.join(other)} ({values})")
    recorded = rec.get("sha256")
    if changed_files(recorded, {}) == ["(none recorded)"] or not set(required) <= set(recorded):
        return f"its record {manifest.name} does not list its files"
    try:
        actual = file_digests(root, list(recorded), follow_symlinks=False)
    except ValueError as e:
        return str(e)
    changed = changed_files(recorded, actual)
    return (f"{', '.join(changed[:4])} differ{'s' if len(changed) == 1 else ''} from its digest (changed since it "
            "was written)" if changed else None)


def dir_size(path: str | Path) -> int:
    """Bytes of all regular files under ``path`` (recursively)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class LockedError(BlockingIOError):
    """Another live process holds the lock (an OSError, so command lines report it as a message)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22), or None
    where that cannot be read (no /proc, no such process): with its pid, what tells a lock's
    holder from a later process that was given the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]  # fields after "pid (comm)" start at field 3
    except (OSError, ValueError, IndexError):
        return None


def _lock_text(pid: int) -> str:
    started = _start_time(pid)
    return f"{pid} {started}\n" if started else f"{pid}\n"


def _lock_holder(path: Path) -> tuple[int | None, str | None]:
    """``(pid, None)`` of the live process holding lock ``path``; ``(None, None)`` when the lock is
    stale (its process is gone, or its pid now belongs to a process started later); ``(None,
    why)`` when the lock is not one this module wrote (a directory, unreadable or garbage)."""
    if path.is_dir():
        return None, "is a directory, not a lock file"
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        return None, f"cannot be read ({getattr(e, 'strerror', None) or e})"
    parts = text.split()
    if not 1 <= len(parts) <= 2 or not parts[0].isdigit() or int(parts[0]) <= 0:
        return None, f"does not hold a process id ({text[:40]!r})"
    pid = int(parts[0])
    if pid == os.getpid() or not _alive(pid):
        return None, None
    if len(parts) == 2:
        started = _start_time(pid)
        if started is not None and started != parts[1]:
            return None, None  # the pid was reused: the holder is gone
    return pid, None


def _lock_write_error(e: OSError, path: Path, what: str) -> OSError:
    """An OSError naming ``what`` and its lock (never the temporary file it is written through)."""
    import errno

    hint = {errno.EROFS: f"the folder {path.parent} is on a read-only file system",
            errno.EACCES: f"the folder {path.parent} is not writable by this user",
            errno.EPERM: f"the folder {path.parent} is not writable by this user",
            errno.ENOSPC: f"free some space on the file system of {path.parent}",
            errno.EDQUOT: f"free some space on the file system of {path.parent}"}.get(e.errno)
    return LockWriteError(e.errno, e.strerror,
                          f"{what}: cannot write its lock {path} ({e.strerror or e}){'; ' + hint if hint else ''}")


class LockWriteError(OSError):
    """A lock that cannot be written: ``errno``/``strerror`` as the file system said, the message
    naming what is locked and the lock file."""

    def __init__(self, code, strerror, message: str):
        super().__init__(code, strerror)
        self.message = message

    def __str__(self) -> str:
        return self.message


@contextmanager
def lock_file(path: str | Path, what: str) -> Iterator[Path]:
    """Hold ``path`` (holding this process's pid and start time) while the block runs.

    The lock appears with its pid already in it (written to a temporary file, then hard-linked
    into place, which fails if the lock exists), so a reader never sees an empty lock. A second
    writer is refused with :class:`LockedError` naming the holder's pid and the lock, which can be
    deleted when no summprune command is running; a lock left by a killed process (its pid no
    longer alive, or alive but started after the lock was written: a reused pid) is taken over.
    A lock that is not one this function wrote (a directory, garbage, an empty file) is refused,
    saying so. A folder where the lock cannot be written is an OSError naming ``what`` and the
    lock. On exit the lock is removed if it is still ours.
    """
    path = Path(path)
    me = _lock_text(os.getpid())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        tmp.write_text(me)
    except OSError as e:
        raise _lock_write_error(e, path, what) from None
    remove = f"if no summprune command is running on it, delete {path}"
    try:
        for _ in range(3):
            try:
                os.link(tmp, path)
                break
            except FileExistsError:
                pid, odd = _lock_holder(path)
                if odd is not None:
                    raise LockedError(f"{what}: its lock {path} {odd}; {remove} and start again") from None
                if pid is not None:
                    raise LockedError(f"{what} is being written by process {pid} (lock {path}); wait for it to "
                                      f"finish or stop it, or choose another output; {remove} (a pid reused "
                                      "by another program keeps it)") from None
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # stale: its process is gone
            except OSError as e:
                raise _lock_write_error(e, path, what) from None
        else:
            raise LockedError(f"{what}: could not take the lock {path}")
    finally:
        tmp.unlink(missing_ok=True)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if path.read_text() == me:
                path.unlink()


def lock_output(out: str | Path) -> contextlib.AbstractContextManager[Path]:
    """:func:`lock_file` for a model output directory (``.<name>.lock`` beside it): two commands
    writing one model directory (``prune``, ``export``, ``run``) would both "succeed", the second
    silently replacing the first's model; the second is refused instead."""
    out = Path(out).expanduser()
    what = f"model directory {out}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _lock_write_error(e, out.parent / f".{out.name}.lock", what) from None
    return lock_file(out.parent / f".{out.name}.lock", what)


# --------------------------------------------------------------------------------------------
# Outputs that would replace an input (issue 22)
# --------------------------------------------------------------------------------------------

#: Suffixes of the files a model directory is made of, whatever their exact name (weight shards,
#: sentencepiece models, pickle checkpoints).
_MODEL_SUFFIXES = (".safetensors", ".safetensors.index.json", ".model", *PICKLE_SUFFIXES)


def _model_file_names() -> set[str]:
    # the formats registry says what each format writes (it sits below this module; the formats,
    # above it, fill it: summprune.io.formats)
    from .formats import model_file_names

    return model_file_names()


def check_not_input(out: str | Path, inputs: dict[str, str | Path | None], what: str = "output") -> None:
    """ValueError if writing ``out`` (the option ``what``) would replace an input: one of
    ``inputs`` (``{option: path}``, None entries skipped) that is the same file (after relative
    paths, symlinks and hard links), or, for an input that is a model directory, one of the files
    that make up the model (config, weights, tokenizer, generation_config.json, pruning.json...).
    Another file inside a model directory (``MODEL/preds.csv``) is allowed: it replaces nothing
    the model is made of."""
    out_p = Path(out).expanduser()
    target = out_p.resolve()
    for name, path in inputs.items():
        if path is None:
            continue
        p = Path(path).expanduser()
        if p.is_dir():
            if not _is_model_dir(p) or target.parent != p.resolve():
                continue
            if target.name in _model_file_names() or target.name.endswith(_MODEL_SUFFIXES):
                raise ValueError(f"{what} {out}: lies inside the model directory {name} {path} and would replace "
                                 f"its {target.name}; write it outside the model directory")
            continue
        same = target == p.resolve()
        if not same and out_p.exists() and p.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(out_p, p)  # a hard link
        if same:
            raise ValueError(f"{what} {out}: is the same file as {name} {path}; writing it would replace "
                             f"that input: choose another file")


# --------------------------------------------------------------------------------------------
# CSV: one parser for every CSV the package reads (data files, references, submissions)
# --------------------------------------------------------------------------------------------

class CsvError(ValueError):
    """A malformed CSV file: the message names the file and the line."""


def csv_rows(text: str, source: str | Path) -> Iterator[tuple[int, list[str]]]:
    """The rows of CSV ``text`` (any quoting) with the 1-based line each starts on; blank lines are
    skipped. Parsed strictly: a stray or unterminated quote is a :class:`CsvError` naming
    ``source`` and the line its row starts on, where a lenient parser would silently merge every
    following row into one field. Callers check the field counts (see data._read_table)."""
    import csv
    import io
    import sys

    # The default limit (131072 characters a field) is below the longest bills; pandas has none.
    if csv.field_size_limit() < sys.maxsize >> 1:
        csv.field_size_limit(sys.maxsize >> 1)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise CsvError(f"{source}: malformed CSV: the row starting on line {start} has an unterminated or "
                           f"stray quote ({e}, at line {reader.line_num})") from None
        if row:
            yield start, row
        start = reader.line_num + 1

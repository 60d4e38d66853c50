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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import faults

#: Pickle-based checkpoint suffixes: never written, except the names ``atomic_dir`` is told to allow.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
#: Weight files that, beside config.json, make a directory a model directory an export may replace.
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "compact.json", "model_state_dict.pth")


def _is_model_dir(d: Path) -> bool:
    # config.json alone is not enough: a run folder has one too (and finetuned/, steps/, metrics)
    return (d / "config.json").is_file() and any((d / w).is_file() for w in MODEL_WEIGHTS)


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
    when the files are written, before the swap."""
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


@contextmanager
def lock_file(path: str | Path, what: str) -> Iterator[Path]:
    """Hold ``path`` (holding this process's pid) while the block runs.

    The lock appears with its pid already in it (written to a temporary file, then hard-linked
    into place, which fails if the lock exists), so a reader never sees an empty lock. A second
    writer is refused with :class:`LockedError` naming the holder's pid; a lock left by a killed
    process (its pid no longer alive) is taken over. On exit the lock is removed if it is still
    ours.
    """
    path = Path(path)
    me = f"{os.getpid()}\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_text(me)
    try:
        for _ in range(3):
            try:
                os.link(tmp, path)
                break
            except FileExistsError:
                try:
                    pid = int(path.read_text().strip())
                except (OSError, ValueError):
                    pid = -1  # unreadable: someone else's, treat as held
                if pid == -1 or (pid != os.getpid() and _alive(pid)):
                    raise LockedError(f"{what} is being written by process {pid if pid > 0 else '?'} (lock {path}); "
                                      "wait for it to finish or stop it, or choose another output") from None
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # stale: its process is gone
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

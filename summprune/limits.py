"""One memory budget, checked before anything large is allocated.

Every loader (hf, compact, course, a prune step's state, the CTranslate2 conversion) and
generation (beams x batch x length) compute the bytes they are about to allocate from shapes
alone and call :func:`check_memory`, which refuses past the limit, naming the figure and the
memory there is. The limit is the machine's available memory (``psutil``, else
``/proc/meminfo``'s MemAvailable), or ``$SUMMPRUNE_MAX_MEMORY`` (``30GB``, ``512MiB``, a plain
number of bytes) where set: lower to keep a shared machine safe, higher where swap or memory
freed later makes a larger load fit. A 1.7 MB compact file whose config says ``d_model`` 32,768
expanded to 13.7 GB at load before this check existed.

This module imports nothing of the package (every layer may use it)."""

from __future__ import annotations

import math
import os
import re

#: Environment variable that overrides the limit (a size: ``30GB``, ``512MiB``, ``1e9``).
ENV = "SUMMPRUNE_MAX_MEMORY"

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]+)?)\s*([a-z]*)\s*", re.IGNORECASE)


class MemoryBudgetError(ValueError):
    """Something would allocate more memory than the budget allows; the message names the
    figure, the limit and where the limit came from."""


def parse_size(text: str) -> int:
    """Bytes of a size such as ``30GB``, ``1.5GiB``, ``512MB`` or ``1000000`` (decimal units:
    GB = 10**9; binary ones: GiB = 2**30). ValueError for anything else."""
    m = _SIZE.fullmatch(str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size; write e.g. 30GB, 512MiB or a number of bytes")
    n = float(m.group(1)) * _UNITS[unit]
    if not n >= 1:
        raise ValueError(f"{text!r}: a memory limit must be at least 1 byte")
    return int(n)


def format_bytes(n: float) -> str:
    """``13.7 GB`` (decimal units, as ``parse_size`` reads them)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (psutil's ``available``, else
    /proc/meminfo's MemAvailable), or None where neither can tell."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # not installed, or a platform it cannot read
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_limit() -> tuple[int | None, str]:
    """``(bytes, where it comes from)``: ``$SUMMPRUNE_MAX_MEMORY`` if set (ValueError naming it
    if it is not a size), else the memory available now; ``(None, ...)`` where neither is known."""
    raw = os.environ.get(ENV)
    if raw is not None and raw.strip():
        try:
            return parse_size(raw), f"the limit {ENV}={raw.strip()}"
        except ValueError as e:
            raise ValueError(f"${ENV}: {e}") from None
    avail = available_memory()
    return avail, "the memory available on this machine" if avail is not None else "unknown"


def check_memory(nbytes: int, what: str, where: str = "") -> None:
    """MemoryBudgetError if ``nbytes`` (what ``what`` would allocate; ``where`` names the file
    or option that asks for it) exceeds :func:`memory_limit`."""
    limit, source = memory_limit()
    if limit is None or nbytes <= limit:
        return
    hint = (f"raise {ENV} if it fits" if source.startswith("the limit") else
            f"if it fits after all, e.g. with swap, set {ENV}={math.ceil(nbytes / 1e9)}GB")
    raise MemoryBudgetError(
        f"{where + ': ' if where else ''}{what} needs {format_bytes(nbytes)} of memory, more than "
        f"{format_bytes(limit)}, {source}; nothing was allocated ({hint})")


def check_threads(n: int, where: str) -> int:
    """``n`` if it is a sane number of CPU threads, else ValueError naming ``where``: at most
    :func:`max_threads` (four per CPU; 100,000 threads raised a raw MemoryError in torch)."""
    cap = max_threads()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{where} {n!r}: must be a whole number >= 1")
    if n > cap:
        raise ValueError(f"{where} {n}: more than {cap} (four per CPU of this machine's {os.cpu_count() or 1}); "
                         "more threads than cores only adds contention")
    return n


def max_threads() -> int:
    return 4 * (os.cpu_count() or 1)

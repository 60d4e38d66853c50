"""The export formats' registry, below everything that reads it.

:data:`FORMATS` (name -> :class:`Format`: how a format is written, how a directory of it is
recognised, how it is read, which value dtypes it stores, which files it is made of) is filled by
:mod:`summprune.export`, which defines the built-in formats (hf, compact, course) over the io
modules; it is read by ``export --format``, the config's ``export_format`` check,
:func:`summprune.export.export_model` / :func:`~summprune.export.load_model`, the report's stored
dtype (:func:`summprune.summary.stored_info`) and :func:`summprune.io.files.check_not_input` (which
files make up a model directory). This module imports nothing that imports torch, so that low
modules (the config, io.files) can read the registry; the package's ``__init__`` adds the loader
that imports :mod:`summprune.export` at the registry's first read (:mod:`summprune.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..registry import Registry


@dataclass(frozen=True)
class Format:
    """An export format: ``save(model, out_dir, tokenizer=, pruning_info=, dtype=)`` writes it
    atomically; ``detect(dir)`` says whether a directory holds it; ``load(dir)`` reads it back
    (every check included); ``dtypes``: the value dtypes it can store (the first is the default)."""

    name: str
    save: Callable[..., Path]
    detect: Callable[[Path], bool]
    load: Callable[[Path], Any]
    dtypes: tuple[str, ...] = ("fp32",)
    #: the model families (``summprune.models`` names) it can hold, None = every family, and why
    #: the others cannot be (said when one is refused)
    families: tuple[str, ...] | None = None
    families_why: str = ""
    #: the names of the files a directory of this format is made of (config, weights, tokenizer,
    #: pruning record...): an output that would replace one of them is refused
    files: tuple[str, ...] = ()
    #: the weight files among them: a directory with config.json and one of these holds a model
    #: (an export may replace it; a run folder, which has a config.json too, is none)
    weights: tuple[str, ...] = ()
    #: ``dir -> value dtype`` stored there, from the format's own record (None: read from the
    #: safetensors headers of the weight files)
    stored_dtype: Callable[[Path], str | None] | None = None


#: Export formats by name, in the order :func:`summprune.export.load_model` tries them on a
#: directory (the most specific first: a course directory is also a save_pretrained one).
FORMATS: Registry = Registry("export format")


def register_format(fmt: Format) -> Format:
    FORMATS[fmt.name] = fmt
    return fmt


def stored_dtypes() -> list[str]:
    """Every value dtype some registered format stores (``export --dtype``, ``export_dtype``)."""
    return sorted({d for f in FORMATS.values() for d in f.dtypes})


def detect(path: Path) -> Format | None:
    """The format a directory is read as (the first registered one that recognises it), or None."""
    return next((f for f in FORMATS.values() if f.detect(path)), None)


def refusal(format: str, family: str) -> str | None:
    """Why the ``format`` export cannot hold a model of ``family`` (a ``summprune.models`` name),
    or None where it can (or no such format is registered)."""
    fmt = FORMATS.get(format)
    if fmt is None or fmt.families is None or family in fmt.families:
        return None
    others = sorted((n for n, f in FORMATS.items() if f.families is None), key=lambda n: n != "hf")  # hf: the default
    return (f"the {format} format cannot hold a {family} model: {fmt.families_why}; export "
            f"{' or '.join(map(repr, others))} instead (export_format={others[0]}, or export --format {others[0]})")


def model_file_names() -> set[str]:
    """The names of the files some registered format makes a model directory of."""
    return {n for f in FORMATS.values() for n in (*f.files, *f.weights)}


def is_model_dir(d: Path) -> bool:
    """Whether ``d`` holds a model of some registered format: its config.json and one of the
    format's weight files (config.json alone is not enough: a run folder has one too)."""
    return (d / "config.json").is_file() and any((d / w).is_file() for f in FORMATS.values() for w in f.weights)

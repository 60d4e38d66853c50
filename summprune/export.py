"""Save a pruned T5 so that it reloads as the very model that was pruned, and load it back.

Three formats, all written atomically; ``hf`` and ``compact`` are pickle-free (safetensors + JSON):

``hf``
    ``save_pretrained`` of the model with pruning made permanent (zeros folded into the
    weights), plus the tokenizer, ``pruning.json`` and ``checksums.json`` (sha256 of the weight
    files, verified by :func:`load_model`). Any transformers code can load it; it is as large as
    the dense model.

``compact``
    One ``compact.safetensors`` holding, for every distinct tensor the model computes with, either
    the tensor itself (``dense``) or its non-zero values plus a 1-bit-per-element mask
    (``bitmask``), whichever is smaller; ``compact.json`` describes every tensor (shape, storage,
    nnz, sha256) and which names share one tensor. See :data:`FORMAT` and ``save_compact``.

``course``
    The course's submission: the ``hf`` directory plus ``model_state_dict.pth``, the state dict
    (``weight_orig``/``weight_mask`` for every ``nn.Linear``) that the course's grader loads; see
    :mod:`summprune.io.course`. Its ``.pth`` is the one pickle-based file this package reads, with
    ``torch.load(weights_only=True)``.

``load_model`` reads any of them (or a hub name) and checks everything it can: a missing, truncated
or corrupt file, or a manifest that does not match the data, raises ``FileNotFoundError`` or
``ValueError`` naming the file and the tensor -- never a silently wrong model.

The formats are one registry, :data:`FORMATS` (name -> :class:`Format`: how it is written, how a
directory of it is recognised, how it is read, which value dtypes it stores); ``export --format``,
the config's ``export_format`` check, :func:`export_model` and :func:`load_model` all read it. A
new format is a save and a load function and one :func:`register_format` line.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .io.compact import (_DTYPE_ALIASES, COMPACT_WEIGHTS, DTYPES, FORMAT, MANIFEST, VALUE_DTYPES, VERSION, dtype_name,
                          encode_model, load_compact)
from .io.course import STATE_FILE as COURSE_STATE  # course format; the one pickle read (weights_only=True)
from .io.files import PICKLE_SUFFIXES, atomic_dir, check_output, dir_size, read_json, write_json
from .io import hf
from .io.hf import (CHECKSUMS, PRUNING, TOKENIZER_FILES, WEIGHTS, TokenizerFiles, check_finite, enable_cache,
                    load_generation_config, save_tokenizer, tokenizer_files, validate_hf_dir, verify_checksums, write_hf)
from .prune import permanent_copy



@dataclass(frozen=True)
class Format:
    """An export format: ``save(model, out_dir, tokenizer=, pruning_info=, dtype=)`` writes it
    atomically; ``detect(dir)`` says whether a directory holds it; ``load(dir)`` reads it back
    (every check included); ``dtypes``: the value dtypes it can store (the first is the default)."""

    name: str
    save: Callable[..., Path]
    detect: Callable[[Path], bool]
    load: Callable[[Path], nn.Module]
    dtypes: tuple[str, ...] = ("fp32",)
    #: the model families (``summprune.models`` names) it can hold, None = every family, and why
    #: the others cannot be (said when one is refused)
    families: tuple[str, ...] | None = None
    families_why: str = ""


#: Export formats by name, in the order :func:`load_model` tries them on a directory (the most
#: specific first: a course directory is also a save_pretrained one).
FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    FORMATS[fmt.name] = fmt
    return fmt


def stored_dtypes() -> list[str]:
    """Every value dtype some registered format stores (``export --dtype``, ``export_dtype``)."""
    return sorted({d for f in FORMATS.values() for d in f.dtypes})


def check_dtype(fmt: Format, dtype: str | None) -> str:
    """``dtype``'s canonical name if ``fmt`` stores it, else ValueError naming what it stores."""
    name = "fp32" if dtype is None else _DTYPE_ALIASES.get(str(dtype), str(dtype))
    if name not in fmt.dtypes:
        others = [f.name for f in FORMATS.values() if name in f.dtypes]
        raise ValueError(f"dtype={dtype!r}: the {fmt.name} format stores {', '.join(fmt.dtypes)}"
                         + (f" (export_format={'/'.join(others)} stores {name})" if others else ""))
    return name


def family_refusal(format: str, model: Any) -> str | None:
    """Why the ``format`` export cannot hold ``model`` (a model, config, model directory or
    family name: anything :func:`summprune.models.family_of` reads), or None where it can. Read
    before any work: a config's check, ``export``, ``prune`` and ``run`` ask it first."""
    from .models import family_of

    fmt = FORMATS.get(format)
    if fmt is None or fmt.families is None:
        return None
    fam = family_of(model)
    if fam.name in fmt.families:
        return None
    others = sorted((n for n, f in FORMATS.items() if f.families is None), key=lambda n: n != "hf")  # hf: the default
    return (f"the {format} format cannot hold a {fam.name} model: {fmt.families_why}; export "
            f"{' or '.join(map(repr, others))} instead (export_format={others[0]}, or export --format {others[0]})")


def check_family(format: str, model: Any) -> None:
    """ValueError with :func:`family_refusal`'s reason where ``format`` cannot hold ``model``."""
    why = family_refusal(format, model)
    if why is not None:
        raise ValueError(why)


@contextmanager
def _export_dir(out: Path, model: nn.Module, fmt: str, dtype: str, pruning_info: dict | None,
                allow: tuple[str, ...] = ()) -> Iterator[Path]:
    """The writer of every format: :func:`summprune.io.files.atomic_dir` whose temporary directory,
    once the format's files are in it, gets the model card (``README.md``, :mod:`summprune.card`)
    before it replaces ``out``. ``model``: the model as given to the save (masks and all: the card
    counts what it computes with)."""
    from .card import write_card

    with atomic_dir(out, allow=allow, fault="export") as tmp:
        yield tmp
        write_card(tmp, model, fmt, dtype, pruning_info)


def save_hf(model: nn.Module, out_dir: str | Path, tokenizer: Any = None,
            pruning_info: dict | None = None) -> Path:
    """Write ``model`` with pruning made permanent as a ``save_pretrained`` directory.

    The caller's model is not modified: if it still carries pruning masks, a copy is made
    permanent (:func:`summprune.prune.make_permanent`, which keeps a tied embedding tied) and
    saved (only the masked tensors are copied). Output: ``model.safetensors``, ``config.json``,
    ``generation_config.json``, the tokenizer's files if ``tokenizer`` is given (an object with
    ``save_pretrained``, or a tokenizer directory / hub name), ``pruning.json`` if ``pruning_info`` is given, and
    ``checksums.json`` (sha256 of the weight files). ``out_dir`` is written atomically: into a
    sibling ``<out>.tmp-XXXX`` that replaces ``out_dir`` only once complete. Returns ``out_dir``.
    """
    out = check_output(out_dir)
    perm = permanent_copy(model)
    check_finite(perm)
    with _export_dir(out, model, "hf", "fp32", pruning_info) as tmp:
        write_hf(perm, tmp, tokenizer, pruning_info)
    return out


def save_course(model: nn.Module, out_dir: str | Path, tokenizer: Any = None,
                pruning_info: dict | None = None) -> Path:
    """Write the course's submission format: a ``save_pretrained`` directory (as
    :func:`save_hf`) plus ``model_state_dict.pth``, the state dict the course's grader loads
    after ``prune.identity`` on every ``nn.Linear`` (see :mod:`summprune.io.course`).

    Refuses (ValueError) a model the grader's tied model cannot hold (``tie_mode='untie'``)
    before anything is written. ``checksums.json`` covers the ``.pth`` too. Atomic, like the
    other formats. Returns ``out_dir``.
    """
    from .io.course import STATE_FILE, course_state_dict, tied_copy_for_safetensors

    check_family("course", model)
    out = check_output(out_dir)
    perm = permanent_copy(model)  # once: a copy of every pruned weight on t5-small
    check_finite(perm)
    state = course_state_dict(model, perm)  # raises for untied lm_head before any file exists
    plain = tied_copy_for_safetensors(model, perm)
    with _export_dir(out, model, "course", "fp32", pruning_info, allow=(STATE_FILE,)) as tmp:
        torch.save(state, str(tmp / STATE_FILE))
        write_hf(plain, tmp, tokenizer, pruning_info, extra_checksummed=(STATE_FILE,))
    return out


def save_compact(model: nn.Module, out_dir: str | Path, tokenizer: Any = None,
                 pruning_info: dict | None = None, dtype: str = "fp32") -> Path:
    """Write ``model`` in the compact format (non-zeros + bitmask), atomically. Returns ``out_dir``.

    Pruning is made permanent on a copy (the caller's model is not modified). Every distinct
    tensor of the state dict is stored once, under the first name it appears with; the other
    names that share it (``encoder/decoder.embed_tokens.weight`` and ``lm_head.weight`` for a
    tied T5) are listed in ``compact.json`` and are re-tied on load. Per tensor, ``bitmask``
    storage (the non-zero values in row-major order plus ``np.packbits`` of the non-zero mask,
    1 bit per element, big-endian bit order) is used when smaller than ``dense`` storage.

    ``dtype`` is the dtype of the stored floating-point values:

    * ``"fp32"``: bit-exact (every value reloads identically; a pruned weight held as ``-0.0``
      reloads as ``+0.0``, which compares equal).
    * ``"int8"``: every weight matrix (2-D, at least 4,096 elements) as int8 times a float32
      scale per row (symmetric: scale = the row's max |w| / 127); zeros stay exact and every
      non-zero stays non-zero (one too small for the grid becomes +-1), so the sparsity pattern
      and the honest ratio are the fp32 model's; each value is within one step of the original.
      Layer norms and the relative-attention biases stay fp32. :func:`load_model` dequantizes to
      fp32. Masks and int8 values are lzma-compressed where that saves at least 2%.
    * ``"fp16"`` / ``"bf16"``: every floating-point value (pruned matrices, embeddings, layer
      norms, relative-attention biases) is rounded to that dtype; :func:`load_model` returns an
      fp32 model holding the rounded values, so its outputs may differ slightly from the
      original's. The sparsity pattern is the fp32 one (a value that underflows to 0 in fp16
      keeps its mask bit). fp16 raises ``ValueError`` if a finite value would overflow to inf.
    """
    dt_name = dtype_name(dtype)
    out = check_output(out_dir)
    perm = permanent_copy(model)
    check_finite(perm)
    tensors, manifest = encode_model(perm, dt_name)
    from safetensors.torch import save_file

    with _export_dir(out, model, "compact", dt_name, pruning_info) as tmp:
        save_file(tensors, str(tmp / COMPACT_WEIGHTS), metadata={"format": FORMAT, "version": str(VERSION)})
        perm.config.save_pretrained(str(tmp))
        gen = getattr(perm, "generation_config", None)
        if gen is not None:
            gen.save_pretrained(str(tmp))
        enable_cache(tmp)
        save_tokenizer(tokenizer, tmp, getattr(perm.config, "vocab_size", None))
        hf.write_pruning(pruning_info, tmp)
        write_json(tmp / MANIFEST, manifest)
    return out


def _load_course(p: Path) -> nn.Module:
    from .io.course import load_course

    verify_checksums(p)
    model, _ = load_course(p)  # its tensors checked finite as they are read
    gen = load_generation_config(p)
    if gen is not None:
        model.generation_config = gen
    return model


def _load_hf(p: Path) -> nn.Module:
    from .modeling import load_pretrained

    files = validate_hf_dir(p)
    model = load_pretrained(str(p))
    check_finite(model, files)
    return model


def _save(fn: Callable[..., Path]) -> Callable[..., Path]:
    """``fn`` (a format without dtypes) with the registry's save signature."""
    return lambda model, out_dir, tokenizer=None, pruning_info=None, dtype="fp32": fn(
        model, out_dir, tokenizer=tokenizer, pruning_info=pruning_info)


register_format(Format("compact", save_compact, lambda p: (p / MANIFEST).is_file(), load_compact,
                       dtypes=VALUE_DTYPES))
register_format(Format("course", _save(save_course),
                       lambda p: (p / COURSE_STATE).is_file() and (p / "config.json").is_file(), _load_course,
                       families=("t5",),
                       families_why="the course's grader loads its model as a t5-small-shaped T5 "
                                    "(docs/families.md: course is T5-only)"))
register_format(Format("hf", _save(save_hf), lambda p: (p / "config.json").is_file(), _load_hf))


def load_model(path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """Load a model saved by :func:`save_compact` or :func:`save_hf` (or any ``save_pretrained``
    T5 directory, or a hub name). Returns it in eval mode, fp32, on ``device`` (default CPU).

    A directory with ``compact.json`` is read as the compact format; one with
    ``model_state_dict.pth`` as the course's format (that file with ``weights_only=True``, see
    :mod:`summprune.io.course`; this includes directories written by the course's own notebook); one
    with ``config.json`` as
    a ``save_pretrained`` directory (its ``checksums.json`` verified if present, and every
    weight the model needs checked to be in the files, so that a checkpoint of a masked model,
    holding ``weight_orig``/``weight_mask``, is an error rather than random weights). Any other
    existing path, or a missing one that looks like a path, raises ``FileNotFoundError``;
    anything else is treated as a hub name.

    For every format, config.json's sizes are capped and every tensor's shape and dtype checked
    against the model built on the meta device before memory is allocated for it; files named by
    a manifest must be regular files inside the directory; and a model whose weights are not all
    finite (it would generate empty summaries) is refused, naming the file and the tensors.
    """
    from .modeling import _looks_like_path, load_pretrained

    name = str(path)
    p = Path(name).expanduser()
    if p.is_dir():
        fmt = next((f for f in FORMATS.values() if f.detect(p)), None)
        if fmt is not None:
            model = fmt.load(p)
        else:
            raise FileNotFoundError(f"{p}: neither {MANIFEST} (compact format) nor config.json "
                                    "(save_pretrained format); is this a model directory?")
    elif p.exists():
        raise FileNotFoundError(f"{p}: is a file; pass the model directory that holds it")
    elif _looks_like_path(name):
        raise FileNotFoundError(f"model directory not found: {name}")
    else:
        model = load_pretrained(name)
    from .models import family_of

    family_of(model).after_load(model)  # every format: e.g. Pegasus' fixed sinusoids frozen again
    model = model.float().eval()
    if device is not None:
        model = model.to(device)
    return model


#: safetensors' dtype names -> this package's
_SAFETENSORS_DTYPES = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F64": "fp64", "I8": "int8"}


def stored_info(path: str | Path) -> dict:
    """``{"format", "dtype", "bytes"}`` of a model directory as it is on disk: the format that
    :func:`load_model` reads it as, the dtype its floating-point weights are stored in (compact:
    its manifest's; hf and course: the safetensors headers', several joined by '+'), and the
    size of all its files. :func:`load_model` returns fp32 whatever is stored, so a report that
    wants the stored dtype asks here. ``dtype`` is None where no weight file says it."""
    p = Path(path).expanduser()
    fmt = next((f.name for f in FORMATS.values() if f.detect(p)), None)
    dtype = None
    if fmt == "compact":
        value = read_json(p / MANIFEST).get("dtype")
        dtype = value if isinstance(value, str) else None
    else:
        from safetensors import safe_open

        found: set[str] = set()
        for f in sorted(p.glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as h:
                for k in h.keys():
                    name = h.get_slice(k).get_dtype()
                    if name.startswith(("F", "BF")):  # floating point: what a weight is stored as
                        found.add(_SAFETENSORS_DTYPES.get(name, name))
        dtype = "+".join(sorted(found)) or None
    return {"format": fmt, "dtype": dtype, "bytes": dir_size(p)}


def export_model(model_dir_or_model: str | Path | nn.Module, out_dir: str | Path, format: str = "compact",
                 dtype: str = "fp32", tokenizer: Any = None, pruning_info: dict | None = None) -> Path:
    """Export a model object or a saved model (directory of either format, or hub name).

    With a source directory, its tokenizer files and ``pruning.json`` are carried over unless
    ``tokenizer`` / ``pruning_info`` are given. ``out_dir`` may be the source directory itself
    (everything is read before the output replaces it). Returns ``out_dir``.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r}: choose one of {', '.join(map(repr, FORMATS))}")
    fmt = FORMATS[format]
    dtype = check_dtype(fmt, dtype)
    check_output(out_dir)
    if isinstance(model_dir_or_model, nn.Module):
        model = model_dir_or_model
        check_family(format, model)
    else:
        src = Path(str(model_dir_or_model)).expanduser()
        if (src / "config.json").is_file():
            check_family(format, src)  # before the model is loaded
        model = load_model(model_dir_or_model)
        check_family(format, model)  # a hub name's family is known once loaded
        if src.is_dir():
            if tokenizer is None:
                files = tokenizer_files(src)
                if files:
                    tokenizer = TokenizerFiles(files)
            if pruning_info is None and (src / PRUNING).is_file():
                pruning_info = read_json(src / PRUNING)
        elif tokenizer is None:  # hub name: its tokenizer goes along
            tokenizer = str(model_dir_or_model)
    return fmt.save(model, out_dir, tokenizer=tokenizer, pruning_info=pruning_info, dtype=dtype)


__all__ = ["check_finite", "check_family", "family_refusal", "stored_info", "save_hf", "save_compact", "save_course", "load_model", "export_model", "dir_size", "FORMATS",
           "Format", "register_format",
           "FORMAT", "VERSION", "MANIFEST", "COMPACT_WEIGHTS", "WEIGHTS", "CHECKSUMS", "PRUNING", "COURSE_STATE",
           "DTYPES", "PICKLE_SUFFIXES", "TOKENIZER_FILES"]

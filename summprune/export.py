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
from .summary import stored_info  # noqa: F401  (its old home; the report's, beside the other stored facts)



# the registry lives below (summprune.io.formats) so that the config and io.files read it without
# importing this module; the names stay importable from here
from .io.formats import FORMATS, Format, detect, refusal, register_format, stored_dtypes  # noqa: E402,F401


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
    from .vocab import trim_refusal

    why = trim_refusal(format, model)  # a trimmed vocabulary: the course's grader loads t5-small's shape
    if why is not None:
        return why
    if FORMATS.get(format) is None or FORMATS[format].families is None:
        return None
    return refusal(format, family_of(model).name)


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


def _compact_dtype(p: Path) -> str | None:
    value = read_json(p / MANIFEST).get("dtype")
    return value if isinstance(value, str) else None


#: what every format keeps beside its weights: the config, the decoding, the run's record, the tokenizer
_COMMON_FILES = ("config.json", "generation_config.json", PRUNING, *TOKENIZER_FILES)
_HF_FILES = (*_COMMON_FILES, WEIGHTS, f"{WEIGHTS}.index.json", CHECKSUMS)

register_format(Format("compact", save_compact, lambda p: (p / MANIFEST).is_file(), load_compact,
                       dtypes=VALUE_DTYPES, files=(*_COMMON_FILES, MANIFEST, COMPACT_WEIGHTS),
                       weights=(MANIFEST,), stored_dtype=_compact_dtype))
register_format(Format("course", _save(save_course),
                       lambda p: (p / COURSE_STATE).is_file() and (p / "config.json").is_file(), _load_course,
                       families=("t5",),
                       families_why="the course's grader loads its model as a t5-small-shaped T5 "
                                    "(docs/families.md: course is T5-only)",
                       files=(*_HF_FILES, COURSE_STATE), weights=(COURSE_STATE,)))
register_format(Format("hf", _save(save_hf), lambda p: (p / "config.json").is_file(), _load_hf, files=_HF_FILES,
                       weights=(WEIGHTS, f"{WEIGHTS}.index.json")))


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
        fmt = detect(p)
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


def export_model(model_dir_or_model: str | Path | nn.Module, out_dir: str | Path, format: str = "compact",
                 dtype: str = "fp32", tokenizer: Any = None, pruning_info: dict | None = None,
                 trim: dict | None = None) -> Path:
    """Export a model object or a saved model (directory of either format, or hub name).

    With a source directory, its tokenizer files and ``pruning.json`` are carried over unless
    ``tokenizer`` / ``pruning_info`` are given. ``out_dir`` may be the source directory itself
    (everything is read before the output replaces it). Returns ``out_dir``.

    ``trim``: trim the vocabulary on the way (:func:`summprune.vocab.trim`'s keyword arguments:
    ``texts``, ``summaries``, ``prefix``, ``min_count``, ``source``); pruning.json gets its record
    (``vocabulary``) and, where it had none, the untrimmed model as ``original``, which the ratios
    count against. The course format refuses it.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r}: choose one of {', '.join(map(repr, FORMATS))}")
    fmt = FORMATS[format]
    dtype = check_dtype(fmt, dtype)
    if trim is not None:
        from .vocab import trim_refusal

        why = trim_refusal(format, model_dir_or_model, trimming=True)
        if why is not None:
            raise ValueError(why)
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
    if trim is not None:
        return _save_trimmed(fmt, model, out_dir, tokenizer, pruning_info, dtype, trim)
    return fmt.save(model, out_dir, tokenizer=tokenizer, pruning_info=pruning_info, dtype=dtype)


def _save_trimmed(fmt: Format, model: nn.Module, out_dir: str | Path, tokenizer: Any, pruning_info: dict | None,
                  dtype: str, trim: dict) -> Path:
    """``fmt.save`` of ``model`` with its vocabulary trimmed (:func:`summprune.vocab.trim`)."""
    from .modeling import load_tokenizer
    from .summary import original_record
    from .vocab import trim as trim_vocab

    if tokenizer is None:
        raise ValueError("trimming the vocabulary needs the model's tokenizer; none was given or found")
    if isinstance(tokenizer, TokenizerFiles):
        tokenizer = load_tokenizer(tokenizer.files[0].parent)
    elif isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer)
    info = dict(pruning_info or {})
    if not isinstance(info.get("original"), dict):
        info["original"] = original_record(model)  # the untrimmed model: ratios count against it
    with trim_vocab(model, tokenizer, **trim) as (trimmed, files, record):
        info["vocabulary"] = record
        return fmt.save(trimmed, out_dir, tokenizer=files, pruning_info=info, dtype=dtype)


__all__ = ["check_finite", "check_family", "family_refusal", "stored_info", "save_hf", "save_compact", "save_course", "load_model", "export_model", "dir_size", "FORMATS",
           "Format", "register_format",
           "FORMAT", "VERSION", "MANIFEST", "COMPACT_WEIGHTS", "WEIGHTS", "CHECKSUMS", "PRUNING", "COURSE_STATE",
           "DTYPES", "PICKLE_SUFFIXES", "TOKENIZER_FILES"]

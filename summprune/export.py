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
    :mod:`summprune.course`. Its ``.pth`` is the one pickle-based file this package reads, with
    ``torch.load(weights_only=True)``.

``load_model`` reads any of them (or a hub name) and checks everything it can: a missing, truncated
or corrupt file, or a manifest that does not match the data, raises ``FileNotFoundError`` or
``ValueError`` naming the file and the tensor -- never a silently wrong model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration

from .course import STATE_FILE as COURSE_STATE  # course format; the one pickle read (weights_only=True)

#: ``format`` field of ``compact.json``; ``version`` is bumped on incompatible changes.
FORMAT = "summprune-compact"
VERSION = 1
MANIFEST = "compact.json"
WEIGHTS = "model.safetensors"  # hf format
# The compact weights get their own name so that plain ``from_pretrained`` on a compact
# directory fails loudly instead of filling the model with random weights.
COMPACT_WEIGHTS = "compact.safetensors"
PRUNING = "pruning.json"
CHECKSUMS = "checksums.json"  # hf and course formats
#: Export formats: see the module docstring.
FORMATS = ("hf", "compact", "course")

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
_TORCH_DTYPE_NAMES = {
    torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float64: "float64",
    torch.int64: "int64", torch.int32: "int32", torch.int16: "int16", torch.int8: "int8",
    torch.uint8: "uint8", torch.bool: "bool",
}
_DTYPE_BY_NAME = {v: k for k, v in _TORCH_DTYPE_NAMES.items()}

#: Files a tokenizer may consist of; ``export_model`` copies those present in the source dir.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "spiece.model", "sentencepiece.bpe.model", "vocab.json", "vocab.txt", "merges.txt",
    "chat_template.jinja", "chat_template.json",
)
#: Never written (pickle-based checkpoint formats); an output holding one is an error.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

_VALUES = "::values"
_MASK = "::mask"


# --------------------------------------------------------------------------------------------
# public API


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
    out = _check_output(out_dir)
    model = _permanent(model)
    with _atomic_dir(out) as tmp:
        _write_hf(model, tmp, tokenizer, pruning_info)
    return out


def save_course(model: nn.Module, out_dir: str | Path, tokenizer: Any = None,
                pruning_info: dict | None = None) -> Path:
    """Write the course's submission format: a ``save_pretrained`` directory (as
    :func:`save_hf`) plus ``model_state_dict.pth``, the state dict the course's grader loads
    after ``prune.identity`` on every ``nn.Linear`` (see :mod:`summprune.course`).

    Refuses (ValueError) a model the grader's tied model cannot hold (``tie_mode='untie'``)
    before anything is written. ``checksums.json`` covers the ``.pth`` too. Atomic, like the
    other formats. Returns ``out_dir``.
    """
    from .course import STATE_FILE, course_state_dict, tied_copy_for_safetensors

    out = _check_output(out_dir)
    state = course_state_dict(model)  # raises for untied lm_head before any file exists
    plain = tied_copy_for_safetensors(model)
    with _atomic_dir(out, allow=(STATE_FILE,)) as tmp:
        torch.save(state, str(tmp / STATE_FILE))
        _write_hf(plain, tmp, tokenizer, pruning_info, extra_checksummed=(STATE_FILE,))
    return out


def _write_hf(model: nn.Module, tmp: Path, tokenizer: Any, pruning_info: dict | None,
              extra_checksummed: tuple[str, ...] = ()) -> None:
    """save_pretrained + tokenizer + pruning.json + checksums.json into ``tmp``."""
    model.save_pretrained(str(tmp))
    _save_tokenizer(tokenizer, tmp)
    _write_pruning(pruning_info, tmp)
    weight_files = sorted(p.name for p in tmp.iterdir()
                          if p.name.endswith((".safetensors", ".safetensors.index.json")) or p.name in extra_checksummed)
    _write_json(tmp / CHECKSUMS, {
        "format": "summprune-hf-checksums", "version": 1, "algorithm": "sha256",
        "files": {f: _sha256_file(tmp / f) for f in weight_files},
    })


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
    * ``"fp16"`` / ``"bf16"``: every floating-point value (pruned matrices, embeddings, layer
      norms, relative-attention biases) is rounded to that dtype; :func:`load_model` returns an
      fp32 model holding the rounded values, so its outputs may differ slightly from the
      original's. The sparsity pattern is the fp32 one (a value that underflows to 0 in fp16
      keeps its mask bit). fp16 raises ``ValueError`` if a finite value would overflow to inf.
    """
    dt_name = _dtype_name(dtype)
    out = _check_output(out_dir)
    model = _permanent(model)
    store_dtype = DTYPES[dt_name]

    tensors: dict[str, torch.Tensor] = {}
    entries: list[dict] = []
    tied: dict[str, list[str]] = {}
    canon_of: dict[int, str] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) in canon_of:
            tied.setdefault(canon_of[id(t)], []).append(name)
            continue
        canon_of[id(t)] = name
        entry, stored = _encode(name, t.detach().cpu(), store_dtype)
        entries.append(entry)
        tensors.update(stored)

    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dt_name,
        "weights_file": COMPACT_WEIGHTS,
        "model_class": type(model).__name__,
        "mask_encoding": "numpy.packbits, big-endian bit order, row-major (C) element order",
        "checksum": "sha256 of the stored bytes (dense: the tensor; bitmask: values then mask)",
        "total_numel": sum(e["numel"] for e in entries),
        "total_nnz": sum(e["nnz"] for e in entries),
        "tensors": entries,
        "tied": tied,
    }
    from safetensors.torch import save_file

    with _atomic_dir(out) as tmp:
        save_file(tensors, str(tmp / COMPACT_WEIGHTS), metadata={"format": FORMAT, "version": str(VERSION)})
        model.config.save_pretrained(str(tmp))
        gen = getattr(model, "generation_config", None)
        if gen is not None:
            gen.save_pretrained(str(tmp))
        _save_tokenizer(tokenizer, tmp)
        _write_pruning(pruning_info, tmp)
        _write_json(tmp / MANIFEST, manifest)
    return out


def load_model(path: str | Path, device: str | torch.device | None = None) -> T5ForConditionalGeneration:
    """Load a model saved by :func:`save_compact` or :func:`save_hf` (or any ``save_pretrained``
    T5 directory, or a hub name). Returns it in eval mode, fp32, on ``device`` (default CPU).

    A directory with ``compact.json`` is read as the compact format; one with
    ``model_state_dict.pth`` as the course's format (that file with ``weights_only=True``, see
    :mod:`summprune.course`; this includes directories written by the course's own notebook); one
    with ``config.json`` as
    a ``save_pretrained`` directory (its ``checksums.json`` verified if present, and every
    weight the model needs checked to be in the files, so that a checkpoint of a masked model,
    holding ``weight_orig``/``weight_mask``, is an error rather than random weights). Any other
    existing path, or a missing one that looks like a path, raises ``FileNotFoundError``;
    anything else is treated as a hub name.
    """
    from .modeling import _looks_like_path, load_pretrained

    name = str(path)
    p = Path(name).expanduser()
    if p.is_dir():
        if (p / MANIFEST).is_file():
            model = _load_compact(p)
        elif (p / COURSE_STATE).is_file() and (p / "config.json").is_file():
            from .course import load_course

            _verify_checksums(p)
            model, _ = load_course(p)
            gen = p / "generation_config.json"
            if gen.is_file():
                model.generation_config = GenerationConfig.from_pretrained(str(p))
        elif (p / "config.json").is_file():
            _validate_hf_dir(p)
            model = load_pretrained(str(p))
        else:
            raise FileNotFoundError(f"{p}: neither {MANIFEST} (compact format) nor config.json "
                                    "(save_pretrained format); is this a model directory?")
    elif p.exists():
        raise FileNotFoundError(f"{p}: is a file; pass the model directory that holds it")
    elif _looks_like_path(name):
        raise FileNotFoundError(f"model directory not found: {name}")
    else:
        model = load_pretrained(name)
    model = model.float().eval()
    if device is not None:
        model = model.to(device)
    return model


def export_model(model_dir_or_model: str | Path | nn.Module, out_dir: str | Path, format: str = "compact",
                 dtype: str = "fp32", tokenizer: Any = None, pruning_info: dict | None = None) -> Path:
    """Export a model object or a saved model (directory of either format, or hub name).

    With a source directory, its tokenizer files and ``pruning.json`` are carried over unless
    ``tokenizer`` / ``pruning_info`` are given. ``out_dir`` may be the source directory itself
    (everything is read before the output replaces it). Returns ``out_dir``.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r}: choose one of {', '.join(map(repr, FORMATS))}")
    if format != "compact" and dtype not in (None, "fp32", "float32"):
        raise ValueError(f"dtype={dtype!r} applies to the compact format only; the {format} format is saved in fp32")
    if format == "compact":
        _dtype_name(dtype)
    _check_output(out_dir)
    if isinstance(model_dir_or_model, nn.Module):
        model = model_dir_or_model
    else:
        src = Path(str(model_dir_or_model)).expanduser()
        model = load_model(model_dir_or_model)
        if src.is_dir():
            if tokenizer is None:
                files = [src / f for f in TOKENIZER_FILES if (src / f).is_file()]
                if files:
                    tokenizer = _TokenizerFiles(files)
            if pruning_info is None and (src / PRUNING).is_file():
                pruning_info = _read_json(src / PRUNING)
        elif tokenizer is None:  # hub name: its tokenizer goes along
            tokenizer = str(model_dir_or_model)
    if format == "hf":
        return save_hf(model, out_dir, tokenizer=tokenizer, pruning_info=pruning_info)
    if format == "course":
        return save_course(model, out_dir, tokenizer=tokenizer, pruning_info=pruning_info)
    return save_compact(model, out_dir, tokenizer=tokenizer, pruning_info=pruning_info, dtype=dtype)


def dir_size(path: str | Path) -> int:
    """Bytes of all regular files under ``path`` (recursively)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# --------------------------------------------------------------------------------------------
# compact encoding


def _encode(name: str, t: torch.Tensor, store_dtype: torch.dtype) -> tuple[dict, dict[str, torch.Tensor]]:
    shape = list(t.shape)
    numel = t.numel()
    entry: dict[str, Any] = {"name": name, "shape": shape, "dtype": _TORCH_DTYPE_NAMES.get(t.dtype, str(t.dtype)), "numel": numel}
    if not t.is_floating_point():
        stored = t.contiguous()
        entry.update(storage="dense", stored_dtype=entry["dtype"], nnz=int(torch.count_nonzero(t)),
                     sha256=_sha256_tensors(stored))
        return entry, {name: stored}
    flat = t.reshape(-1)
    nz = flat != 0
    nnz = int(nz.sum())
    cast = flat.to(store_dtype)
    if store_dtype == torch.float16:
        bad = torch.isinf(cast) & torch.isfinite(flat)
        if bool(bad.any()):
            raise ValueError(f"{name}: {int(bad.sum())} value(s) overflow fp16 (max 65504, largest "
                             f"|value| {float(flat.abs().max()):.4g}); use dtype='bf16' or 'fp32'")
    itemsize = torch.empty((), dtype=store_dtype).element_size()
    mask_bytes = math.ceil(numel / 8)
    entry["stored_dtype"] = _TORCH_DTYPE_NAMES[store_dtype]
    entry["nnz"] = nnz
    if numel > 0 and nnz * itemsize + mask_bytes < numel * itemsize:
        values = cast[nz].contiguous()
        mask = torch.from_numpy(np.packbits(nz.numpy()))
        entry["storage"] = "bitmask"
        entry["sha256"] = _sha256_tensors(values, mask)
        return entry, {name + _VALUES: values, name + _MASK: mask}
    stored = cast.reshape(shape).contiguous()
    entry["storage"] = "dense"
    entry["sha256"] = _sha256_tensors(stored)
    return entry, {name: stored}


def _decode(entry: dict, stored: dict[str, torch.Tensor], file: Path) -> torch.Tensor:
    """Rebuild one tensor (floating point -> fp32), checking everything against the manifest."""
    name = entry["name"]
    where = f"{file}: tensor {name!r}"
    shape = [int(s) for s in entry["shape"]]
    numel = math.prod(shape)
    if int(entry.get("numel", numel)) != numel:
        raise ValueError(f"{where}: compact.json says numel={entry['numel']} but shape {shape} has {numel}")
    nnz = int(entry["nnz"])
    kind = entry["storage"]
    want_dtype = _DTYPE_BY_NAME.get(entry.get("stored_dtype", ""))
    if want_dtype is None:
        raise ValueError(f"{where}: unknown stored_dtype {entry.get('stored_dtype')!r} in {MANIFEST}")
    if kind == "dense":
        t = _get(stored, name, file)
        if list(t.shape) != shape:
            raise ValueError(f"{where}: stored shape {list(t.shape)} != {MANIFEST} shape {shape}")
        if t.dtype != want_dtype:
            raise ValueError(f"{where}: stored dtype {t.dtype} != {MANIFEST} stored_dtype {want_dtype}")
        _check_sha(entry, where, t)
        got = int(torch.count_nonzero(t))
        if t.is_floating_point() and want_dtype == _DTYPE_BY_NAME.get(entry["dtype"]) and got != nnz:
            raise ValueError(f"{where}: {got} non-zeros but {MANIFEST} says nnz={nnz}")
        return t.float() if t.is_floating_point() else t
    if kind != "bitmask":
        raise ValueError(f"{where}: unknown storage {kind!r} in {MANIFEST}")
    values = _get(stored, name + _VALUES, file)
    mask = _get(stored, name + _MASK, file)
    if values.dtype != want_dtype or values.dim() != 1:
        raise ValueError(f"{where}: values are {values.dtype} {list(values.shape)}, expected 1-D {want_dtype}")
    if mask.dtype != torch.uint8 or list(mask.shape) != [math.ceil(numel / 8)]:
        raise ValueError(f"{where}: mask is {mask.dtype} {list(mask.shape)}, expected uint8 "
                         f"[{math.ceil(numel / 8)}] for shape {shape}")
    if values.numel() != nnz:
        raise ValueError(f"{where}: {values.numel()} stored values but {MANIFEST} says nnz={nnz}")
    _check_sha(entry, where, values, mask)
    bits = np.unpackbits(mask.numpy())
    if bits[numel:].any():
        raise ValueError(f"{where}: mask has bits set past the tensor's {numel} elements")
    bits = torch.from_numpy(bits[:numel].astype(bool))
    pop = int(bits.sum())
    if pop != nnz:
        raise ValueError(f"{where}: mask popcount {pop} != nnz {nnz} in {MANIFEST}")
    out = torch.zeros(numel, dtype=torch.float32)
    out[bits] = values.float()
    return out.reshape(shape)


def _get(stored: dict[str, torch.Tensor], key: str, file: Path) -> torch.Tensor:
    if key not in stored:
        raise ValueError(f"{file}: tensor {key!r} listed in {MANIFEST} is missing from the file")
    return stored[key]


def _check_sha(entry: dict, where: str, *ts: torch.Tensor) -> None:
    got = _sha256_tensors(*ts)
    if got != entry.get("sha256"):
        raise ValueError(f"{where}: checksum mismatch (sha256 {got[:16]}... != {MANIFEST}'s "
                         f"{str(entry.get('sha256'))[:16]}...); the file is corrupt")


def _sha256_tensors(*ts: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in ts:
        flat = t.detach().contiguous().reshape(-1)
        if flat.dtype == torch.bool:
            flat = flat.to(torch.uint8)
        h.update(flat.view(torch.uint8).numpy().data)
    return h.hexdigest()


def _load_compact(d: Path) -> T5ForConditionalGeneration:
    man_path = d / MANIFEST
    man = _read_json(man_path)
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise ValueError(f"{man_path}: not a {FORMAT} manifest (format={man.get('format') if isinstance(man, dict) else None!r})")
    if man.get("version") != VERSION:
        raise ValueError(f"{man_path}: format version {man.get('version')!r}; this code reads version {VERSION}")
    if man.get("model_class", "T5ForConditionalGeneration") != "T5ForConditionalGeneration":
        raise ValueError(f"{man_path}: model_class {man.get('model_class')!r}; load_model builds T5ForConditionalGeneration")
    entries, tied = _check_manifest(man, man_path)
    weights = d / str(man.get("weights_file", COMPACT_WEIGHTS))
    names = [e["name"] for e in entries]
    for f in (weights, d / "config.json"):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: missing (needed by the compact model in {d})")

    from safetensors.torch import load_file

    try:
        stored = load_file(str(weights))
    except Exception as e:  # SafetensorError, OSError: truncated or corrupt header
        raise ValueError(f"{weights}: cannot be read as safetensors ({e}); the file is truncated or corrupt") from None
    expected_keys = set()
    for e in entries:
        expected_keys |= {e["name"]} if e.get("storage") == "dense" else {e["name"] + _VALUES, e["name"] + _MASK}
    extra = sorted(set(stored) - expected_keys)
    if extra:
        raise ValueError(f"{weights}: tensor(s) not described by {MANIFEST}: {extra[:5]}")

    model = _meta_model(d)
    config = model.config
    want = {k: list(v.shape) for k, v in model.state_dict().items()}

    aliases = {a: c for c, al in tied.items() for a in al}
    unknown_canon = sorted(set(tied) - set(names))
    if unknown_canon:
        raise ValueError(f"{man_path}: 'tied' names {unknown_canon} are not stored tensors")
    covered = set(names) | set(aliases)
    missing = sorted(set(want) - covered)
    unexpected = sorted(covered - set(want))
    if missing or unexpected:
        raise ValueError(f"{man_path}: does not match the model built from config.json: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")

    sd: dict[str, torch.Tensor] = {}
    for e in entries:
        if list(e["shape"]) != want[e["name"]]:
            raise ValueError(f"{man_path}: tensor {e['name']!r} has shape {list(e['shape'])} but the "
                             f"model built from config.json expects {want[e['name']]}")
        sd[e["name"]] = _decode(e, stored, weights)
    for a, c in aliases.items():
        if want[a] != want[c]:
            raise ValueError(f"{man_path}: {a!r} is tied to {c!r} but their shapes differ")
        sd[a] = sd[c]
    del stored

    model.load_state_dict(sd, strict=True, assign=True)
    # assign=True wraps each name's tensor in its own Parameter: re-tie to one object per group.
    for a, c in aliases.items():
        _set_tensor(model, a, _get_tensor(model, c))
    leftovers = [n for n, t in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers())
                 if t.is_meta]
    if leftovers:  # non-persistent buffers are not in the state dict: recompute them on CPU
        raise ValueError(f"{d}: model tensors {leftovers[:5]} were not restored (not in the state dict)")
    gen = d / "generation_config.json"
    if gen.is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(d))
    return model


def _check_manifest(man: dict, man_path: Path) -> tuple[list[dict], dict[str, list[str]]]:
    """The tensor entries and tie table, checked for structure (not yet against the data)."""
    def bad(msg: str) -> None:
        raise ValueError(f"{man_path}: malformed manifest: {msg}")

    entries = man.get("tensors")
    if not isinstance(entries, list):
        bad("'tensors' is not a list")
    seen: set[str] = set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            bad(f"tensors[{i}] has no name")
        n = e["name"]
        if n in seen:
            bad(f"tensor {n!r} listed twice")
        seen.add(n)
        shape = e.get("shape")
        if not isinstance(shape, list) or not all(isinstance(x, int) and x >= 0 for x in shape):
            bad(f"tensor {n!r}: shape {shape!r} is not a list of sizes")
        if e.get("storage") not in ("dense", "bitmask"):
            bad(f"tensor {n!r}: storage {e.get('storage')!r} is not 'dense' or 'bitmask'")
        if not isinstance(e.get("nnz"), int) or e["nnz"] < 0:
            bad(f"tensor {n!r}: nnz {e.get('nnz')!r} is not a count")
        if not isinstance(e.get("sha256"), str) or not isinstance(e.get("stored_dtype"), str):
            bad(f"tensor {n!r}: sha256 / stored_dtype missing")
    tied = man.get("tied", {})
    if not isinstance(tied, dict) or not all(isinstance(v, list) and all(isinstance(a, str) for a in v)
                                              for v in tied.values()):
        bad("'tied' is not a table of name -> list of names")
    return entries, tied


def _get_tensor(model: nn.Module, name: str) -> torch.Tensor:
    mod_name, _, attr = name.rpartition(".")
    mod = model.get_submodule(mod_name)
    return mod._parameters[attr] if attr in mod._parameters else mod._buffers[attr]


def _set_tensor(model: nn.Module, name: str, t: torch.Tensor) -> None:
    mod_name, _, attr = name.rpartition(".")
    mod = model.get_submodule(mod_name)
    if attr in mod._parameters:
        mod._parameters[attr] = t
    else:
        mod._buffers[attr] = t


# --------------------------------------------------------------------------------------------
# hf directories


def _verify_checksums(d: Path) -> None:
    """Every file ``checksums.json`` lists (if there is one) exists and has its sha256."""
    sums = d / CHECKSUMS
    if sums.is_file():
        info = _read_json(sums)
        files = info.get("files") if isinstance(info, dict) else None
        if not isinstance(files, dict):
            raise ValueError(f"{sums}: malformed (no 'files' table)")
        for fname, digest in files.items():
            f = d / fname
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing (listed in {sums})")
            got = _sha256_file(f)
            if got != digest:
                raise ValueError(f"{f}: checksum mismatch (sha256 {got[:16]}... != {CHECKSUMS}'s "
                                 f"{str(digest)[:16]}...); the file is truncated or corrupt")


def _validate_hf_dir(d: Path) -> None:
    """Checksums (if recorded) and key/shape coverage of a save_pretrained directory."""
    _verify_checksums(d)
    index = d / "model.safetensors.index.json"
    if index.is_file():
        wm = _read_json(index).get("weight_map", {})
        shards = sorted({d / s for s in wm.values()})
    elif (d / WEIGHTS).is_file():
        shards = [d / WEIGHTS]
    else:
        return  # no safetensors weights (e.g. an old pickle checkpoint): transformers decides
    from safetensors import safe_open

    have: dict[str, list[int]] = {}
    for s in shards:
        if not s.is_file():
            raise FileNotFoundError(f"{s}: missing (listed in {index})")
        try:
            with safe_open(str(s), framework="pt") as f:
                for k in f.keys():
                    have[k] = list(f.get_slice(k).get_shape())
        except Exception as e:
            raise ValueError(f"{s}: cannot be read as safetensors ({e}); the file is truncated or corrupt") from None
    meta = _meta_model(d)
    groups: dict[int, list[str]] = {}
    for k, t in meta.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), []).append(k)
    missing = [g[0] if len(g) == 1 else "/".join(g) for g in groups.values() if not any(k in have for k in g)]
    if missing:
        hint = ""
        if any(k.endswith(("_orig", "_mask")) for k in have):
            hint = (" It holds pruning masks (weight_orig/weight_mask): it was saved without making "
                    "pruning permanent; re-export it with summprune.export.save_hf.")
        raise ValueError(f"{shards[0]}: {len(missing)} weight(s) the model needs are not in the "
                         f"checkpoint (transformers would initialise them randomly): {missing[:5]}.{hint}")
    sd = meta.state_dict()
    for k, shape in have.items():
        if k in sd and list(sd[k].shape) != shape:
            raise ValueError(f"{d}: tensor {k!r} has shape {shape} in the checkpoint but config.json implies {list(sd[k].shape)}")


# --------------------------------------------------------------------------------------------
# helpers: permanence, atomic directories, small files


def _has_masks(model: nn.Module) -> bool:
    return any(n.endswith("_mask") for n, _ in model.named_buffers()) or any(
        n.endswith("_orig") for n, _ in model.named_parameters())


def _permanent(model: nn.Module) -> nn.Module:
    """The model with pruning folded in; a copy if it had masks, else the model itself.

    make_permanent mutates only the ``*_orig`` parameters (zeroing them in place), so only those
    are copied; masks, buffers and unpruned parameters are shared with the caller's model (the
    copy is only read, then dropped). That halves the memory and time of a full deep copy.
    """
    if not _has_masks(model):
        return model
    from .prune import make_permanent

    memo: dict[int, Any] = {}
    origs = {id(p) for mod in model.modules() for n, p in mod._parameters.items()
             if p is not None and n.endswith("_orig")}
    for mod in model.modules():
        for p in mod._parameters.values():
            if p is not None and id(p) not in origs:
                memo[id(p)] = p
        for b in mod._buffers.values():
            if b is not None:
                memo[id(b)] = b
        # A pruned module caches ``weight = weight_orig * weight_mask`` as a plain attribute; a
        # non-leaf tensor cannot be deep-copied, and make_permanent discards it anyway.
        for v in mod.__dict__.values():
            if isinstance(v, torch.Tensor) and not v.is_leaf:
                memo[id(v)] = v.detach()
    return make_permanent(copy.deepcopy(model, memo))


def _dtype_name(dtype: str) -> str:
    d = _DTYPE_ALIASES.get(str(dtype), str(dtype))
    if d not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: choose one of {sorted(DTYPES)}")
    return d


def _check_output(out_dir: str | Path) -> Path:
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
        if any(out.iterdir()) and not ((out / "config.json").is_file() or (out / MANIFEST).is_file()):
            raise FileExistsError(f"{out}: exists, is not empty and is not a model directory "
                                  "(no config.json / compact.json); refusing to replace it")
    return out


@contextmanager
def _atomic_dir(out: Path, allow: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a fresh sibling temp dir; on success it replaces ``out``, on error it is removed.
    A pickle-format file in it is an error, except the names in ``allow`` (the course format's
    ``model_state_dict.pth``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = out.parent / f"{out.name}.tmp-{secrets.token_hex(4)}"
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
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.parent / f"{out.name}.old-{secrets.token_hex(4)}"
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


class _TokenizerFiles:
    """Tokenizer given as files to copy verbatim (export from a directory)."""

    def __init__(self, files: list[Path]):
        self.files = files

    def save_pretrained(self, d: str) -> None:
        for f in self.files:
            shutil.copy2(f, Path(d) / f.name)


def _save_tokenizer(tokenizer: Any, d: Path) -> None:
    if tokenizer is None:
        return
    if isinstance(tokenizer, (str, os.PathLike)):
        src = Path(tokenizer).expanduser()
        if src.is_dir():
            files = [src / f for f in TOKENIZER_FILES if (src / f).is_file()]
            if not files:
                raise FileNotFoundError(f"{src}: no tokenizer files ({', '.join(TOKENIZER_FILES[:5])}, ...)")
            tokenizer = _TokenizerFiles(files)
        else:
            from .modeling import load_tokenizer

            tokenizer = load_tokenizer(str(tokenizer))
    tokenizer.save_pretrained(str(d))


def _write_pruning(info: dict | None, d: Path) -> None:
    if info is not None:
        _write_json(d / PRUNING, info)


def _json_default(o: Any) -> Any:
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


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the file is truncated or corrupt") from None


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


__all__ = ["save_hf", "save_compact", "save_course", "load_model", "export_model", "dir_size", "FORMAT", "VERSION"]


def _meta_model(d: Path) -> T5ForConditionalGeneration:
    """The architecture of ``d/config.json`` on the meta device (shapes only, no memory)."""
    try:
        config = T5Config.from_pretrained(str(d))
    except Exception as e:
        raise ValueError(f"{d / 'config.json'}: cannot be read as a T5 config ({e})") from None
    with torch.device("meta"):
        return T5ForConditionalGeneration(config)

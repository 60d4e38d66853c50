"""The compact format's codec: each distinct tensor once, as its non-zero values plus a 1-bit mask
(or dense where that is smaller), with a ``compact.json`` manifest; see ``summprune.export``."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import T5ForConditionalGeneration

from .files import read_json
from .hf import check_finite, file_inside, load_generation_config, meta_model

#: ``format`` field of ``compact.json``; ``version`` is bumped on incompatible changes.
FORMAT = "summprune-compact"
VERSION = 1
MANIFEST = "compact.json"
# The compact weights get their own name so that plain ``from_pretrained`` on a compact
# directory fails loudly instead of filling the model with random weights.
COMPACT_WEIGHTS = "compact.safetensors"

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
_TORCH_DTYPE_NAMES = {
    torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float64: "float64",
    torch.int64: "int64", torch.int32: "int32", torch.int16: "int16", torch.int8: "int8",
    torch.uint8: "uint8", torch.bool: "bool",
}
_DTYPE_BY_NAME = {v: k for k, v in _TORCH_DTYPE_NAMES.items()}
#: safetensors' header names of the dtypes above
_SAFETENSORS_DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}

_VALUES = "::values"
_MASK = "::mask"


def dtype_name(dtype: str) -> str:
    d = _DTYPE_ALIASES.get(str(dtype), str(dtype))
    if d not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: choose one of {sorted(DTYPES)}")
    return d


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


def load_compact(d: Path) -> T5ForConditionalGeneration:
    """The compact model in ``d``. Everything is checked before memory is allocated for it: the
    manifest against the model built from config.json on the meta device, then the shapes and
    dtypes in the safetensors header against the manifest; only then are the tensors read and
    decoded (their checksums and counts checked), and the result checked to be finite."""
    man_path = d / MANIFEST
    man = read_json(man_path)
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise ValueError(f"{man_path}: not a {FORMAT} manifest (format={man.get('format') if isinstance(man, dict) else None!r})")
    if man.get("version") != VERSION:
        raise ValueError(f"{man_path}: format version {man.get('version')!r}; this code reads version {VERSION}")
    if man.get("model_class", "T5ForConditionalGeneration") != "T5ForConditionalGeneration":
        raise ValueError(f"{man_path}: model_class {man.get('model_class')!r}; load_model builds T5ForConditionalGeneration")
    entries, tied = _check_manifest(man, man_path)
    name = man.get("weights_file", COMPACT_WEIGHTS)
    # a plain file name in the model directory: never a path out of it
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{man_path}: weights_file {name!r} is not a file name in {d}")
    weights = file_inside(d, name, man_path)  # nor a symlink out of it
    names = [e["name"] for e in entries]
    if not (d / "config.json").is_file():
        raise FileNotFoundError(f"{d / 'config.json'}: missing (needed by the compact model in {d})")

    model = meta_model(d)  # config.json's sizes checked; shapes only, no memory
    meta_sd = model.state_dict()
    want = {k: list(v.shape) for k, v in meta_sd.items()}

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
    for e in entries:
        if list(e["shape"]) != want[e["name"]]:
            raise ValueError(f"{man_path}: tensor {e['name']!r} has shape {list(e['shape'])} but the "
                             f"model built from config.json expects {want[e['name']]}")
        stored_dt = _DTYPE_BY_NAME.get(e["stored_dtype"])
        if stored_dt is not None and stored_dt.is_floating_point != meta_sd[e["name"]].is_floating_point():
            raise ValueError(f"{man_path}: tensor {e['name']!r} is stored as {e['stored_dtype']} but the model "
                             f"holds it as {meta_sd[e['name']].dtype}")
    for a, c in aliases.items():
        if want[a] != want[c]:
            raise ValueError(f"{man_path}: {a!r} is tied to {c!r} but their shapes differ")
    _check_header(weights, entries)

    from safetensors.torch import load_file

    try:
        stored = load_file(str(weights))
    except Exception as e:  # SafetensorError, OSError: truncated or corrupt header
        raise ValueError(f"{weights}: cannot be read as safetensors ({e}); the file is truncated or corrupt") from None

    sd: dict[str, torch.Tensor] = {}
    for e in entries:
        sd[e["name"]] = _decode(e, stored, weights)
    for a, c in aliases.items():
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
    check_finite(model, weights)
    gen = load_generation_config(d)
    if gen is not None:
        model.generation_config = gen
    return model


def _check_header(weights: Path, entries: list[dict]) -> None:
    """The safetensors header (read without the data) holds exactly the tensors ``entries``
    describe, with the manifest's shapes and dtypes: the tensors read afterwards are no larger
    than the model built from config.json (a bitmask tensor is decoded to its ``shape``)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            header = {k: (list(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as e:  # SafetensorError: truncated file or corrupt header
        raise ValueError(f"{weights}: cannot be read as safetensors ({e}); the file is truncated or corrupt") from None
    expected: dict[str, tuple[list[int], torch.dtype | None]] = {}
    for e in entries:
        shape = [int(x) for x in e["shape"]]
        dt = _DTYPE_BY_NAME.get(e["stored_dtype"])
        if e["storage"] == "dense":
            expected[e["name"]] = (shape, dt)
        else:
            expected[e["name"] + _VALUES] = ([e["nnz"]], dt)
            expected[e["name"] + _MASK] = ([math.ceil(math.prod(shape) / 8)], torch.uint8)
    extra = sorted(set(header) - set(expected))
    if extra:
        raise ValueError(f"{weights}: tensor(s) not described by {MANIFEST}: {extra[:5]}")
    for key, (shape, dt) in expected.items():
        if key not in header:
            raise ValueError(f"{weights}: tensor {key!r} listed in {MANIFEST} is missing from the file")
        got_shape, got_dt = header[key]
        where = f"{weights}: tensor {key!r}"
        if got_shape != shape:
            what = f"nnz={shape[0]}" if key.endswith(_VALUES) else f"shape {shape}"
            raise ValueError(f"{where}: stored shape {got_shape} but {MANIFEST} says {what}")
        if dt is not None and _SAFETENSORS_DTYPES.get(got_dt) != dt:
            raise ValueError(f"{where}: stored dtype {got_dt} but {MANIFEST} says {_TORCH_DTYPE_NAMES[dt]}")


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


def encode_model(model: nn.Module, dt_name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """What ``compact.safetensors`` stores for ``model`` (pruning already permanent) and its
    ``compact.json`` manifest; ``dt_name`` is the value dtype (fp32, fp16, bf16)."""
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
    return tensors, manifest


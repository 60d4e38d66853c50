"""The compact format's codec: each distinct tensor once, as its non-zero values plus a 1-bit mask
(or dense where that is smaller), with a ``compact.json`` manifest; see ``summprune.export``."""

from __future__ import annotations

import hashlib
import lzma
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import family_of
from .files import read_json
from .hf import check_finite, file_inside, load_generation_config, meta_model

#: ``format`` field of ``compact.json``; ``version`` is bumped on incompatible changes.
FORMAT = "summprune-compact"
VERSION = 2
#: versions this code reads: 1 had no int8 values and no compressed blobs (its entries read the same)
READ_VERSIONS = (1, 2)
MANIFEST = "compact.json"
# The compact weights get their own name so that plain ``from_pretrained`` on a compact
# directory fails loudly instead of filling the model with random weights.
COMPACT_WEIGHTS = "compact.safetensors"

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: int8: each output row of a weight matrix as int8 times one float32 scale (symmetric, per row);
#: other tensors (layer norms, biases, the family's exempt tables such as T5's relative-attention
#: bias or Pegasus' sinusoidal positions) stay fp32.
INT8 = "int8"
VALUE_DTYPES = (*DTYPES, INT8)
#: the quantization scheme named in the manifest
INT8_SCHEME = "int8-symmetric-per-row"
#: weight matrices smaller than this stay fp32 under int8: a few kB, not worth a rounding
INT8_MIN_NUMEL = 4096
#: a blob is stored lzma-compressed (stdlib ``lzma``, xz container) only where that saves at least
#: this share: masks at 30% density reach ~0.90 bits per weight (entropy 0.88), at 10% ~0.49
#: (0.47); int8 values lose ~1 bit of their 8; float values barely compress and are not tried.
LZMA_MIN_SAVING = 0.02
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
_SCALE = "::scale"


def dtype_name(dtype: str) -> str:
    d = _DTYPE_ALIASES.get(str(dtype), str(dtype))
    if d not in VALUE_DTYPES:
        raise ValueError(f"dtype={dtype!r}: choose one of {sorted(VALUE_DTYPES)}")
    return d


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scale)``: ``w`` (2-D) as int8 ``q`` times a float32 scale per row, ``w ~ q * scale[:,
    None]``, symmetric (scale = max |w| of the row / 127). Zeros stay exact zeros, and a non-zero
    too small for the grid becomes +-1 instead of 0, so the sparsity pattern (and the honest ratio)
    is exactly ``w``'s; every value is within one step (``scale``) of ``w``, all but those within
    half a step."""
    w = w.detach().float()
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp_(-127, 127)
    tiny = (q == 0) & (w != 0)
    q[tiny] = torch.sign(w[tiny])
    return q.to(torch.int8), scale.contiguous()


def _pack(raw: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``raw`` (uint8/int8, 1-D) as stored: lzma-compressed where that saves
    :data:`LZMA_MIN_SAVING`, else as it is. Returns ``(stored, codec)``."""
    data = raw.contiguous().view(torch.uint8).numpy().tobytes()
    if len(data) >= 64:
        packed = lzma.compress(data, preset=6)
        if len(packed) <= (1 - LZMA_MIN_SAVING) * len(data):
            return torch.frombuffer(bytearray(packed), dtype=torch.uint8), "lzma"
    return raw.contiguous(), "raw"


def _unpack(stored: torch.Tensor, codec: str, dtype: torch.dtype, count: int, where: str) -> torch.Tensor:
    """The 1-D ``dtype`` tensor of ``count`` elements that ``stored`` holds under ``codec``; a
    compressed blob is never decompressed past the size the manifest gives it."""
    if codec == "raw":
        return stored
    if codec != "lzma":
        raise ValueError(f"{where}: unknown codec {codec!r} in {MANIFEST}")
    want = count * torch.empty((), dtype=dtype).element_size()
    dec = lzma.LZMADecompressor()
    try:
        data = dec.decompress(stored.numpy().tobytes(), max_length=want)
    except lzma.LZMAError as e:
        raise ValueError(f"{where}: compressed data is corrupt ({e})") from None
    if len(data) == want and dec.eof and dec.unused_data:
        raise ValueError(f"{where}: {len(dec.unused_data)} byte(s) of trailing data after the compressed stream "
                         f"(which holds the {want} bytes {MANIFEST} says); the file is corrupt")
    if len(data) != want or not dec.eof:
        raise ValueError(f"{where}: compressed data does not hold the {want} bytes {MANIFEST} says "
                         f"(got {len(data)}{'' if dec.eof else ', stream not ended'}); the file is corrupt")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype)


def _encode(name: str, t: torch.Tensor, dt_name: str, exempt: tuple[str, ...] = ()) -> tuple[dict, dict[str, torch.Tensor]]:
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
    # int8 for weight matrices only: biases (BART's final_logits_bias is 1 x vocab) and the
    # family's exempt tables (positions, relative-attention biases) keep their values
    quant = (dt_name == INT8 and t.dim() == 2 and numel >= INT8_MIN_NUMEL and name.endswith(".weight")
             and not any(re.search(rx, name) for rx in exempt))
    scale = None
    if quant:
        q, scale = quantize_rows(t)
        cast, store_dtype = q.reshape(-1), torch.int8
        entry["quant"] = {"scheme": INT8_SCHEME, "scale_dtype": "float32"}
    else:
        store_dtype = DTYPES["fp32" if dt_name == INT8 else dt_name]
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
        entry["storage"] = "bitmask"
        parts = {"values": cast[nz].contiguous(), "mask": torch.from_numpy(np.packbits(nz.numpy()))}
    else:
        entry["storage"] = "dense"
        parts = {"dense": cast.contiguous()}
    codecs, sizes, out = {}, {}, {}
    for part, raw in parts.items():
        # int8 values and masks are bytes an entropy coder shrinks; float bytes barely are
        stored, codec = _pack(raw) if (part == "mask" or quant) else (raw, "raw")
        if codec != "raw":
            codecs[part], sizes[part] = codec, stored.numel()
        elif part == "dense":
            stored = stored.reshape(shape)
        out[_PART_KEYS[part](name)] = stored
    if codecs:
        entry["codecs"], entry["stored_bytes"] = codecs, sizes
    if scale is not None:
        out[name + _SCALE] = scale
    entry["sha256"] = _sha256_tensors(*out.values())
    return entry, out


#: the safetensors key of each stored part of a tensor
_PART_KEYS = {"dense": lambda n: n, "values": lambda n: n + _VALUES, "mask": lambda n: n + _MASK}


def _stored_layout(entry: dict) -> dict[str, tuple[list[int], torch.dtype | None]]:
    """What the safetensors file holds for ``entry``: key -> (shape, dtype), in checksum order."""
    name = entry["name"]
    shape = [int(x) for x in entry["shape"]]
    numel = math.prod(shape)
    dt = _DTYPE_BY_NAME.get(entry["stored_dtype"])
    codecs, sizes = entry.get("codecs") or {}, entry.get("stored_bytes") or {}
    raw = ({"dense": (shape, dt)} if entry["storage"] == "dense"
           else {"values": ([entry["nnz"]], dt), "mask": ([math.ceil(numel / 8)], torch.uint8)})
    out = {}
    for part, (shp, pdt) in raw.items():
        key = _PART_KEYS[part](name)
        out[key] = ([sizes[part]], torch.uint8) if part in codecs else (shp, pdt)
    if entry.get("quant") is not None:
        out[name + _SCALE] = ([shape[0] if shape else 0], torch.float32)
    return out


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
    if kind not in ("dense", "bitmask"):
        raise ValueError(f"{where}: unknown storage {kind!r} in {MANIFEST}")
    quant = entry.get("quant")
    if quant is not None and (quant != {"scheme": INT8_SCHEME, "scale_dtype": "float32"} or want_dtype != torch.int8
                              or len(shape) != 2):
        raise ValueError(f"{where}: quantization {quant!r} of a {entry.get('stored_dtype')} {shape} tensor is not "
                         f"one this code reads ({INT8_SCHEME}, float32 scales, int8 values of a matrix)")
    layout = _stored_layout(entry)
    parts = {}
    for key, (shp, dt) in layout.items():
        t = _get(stored, key, file)
        if list(t.shape) != shp or t.dtype != dt:
            raise ValueError(f"{where}: {key!r} is {t.dtype} {list(t.shape)}, expected {dt} {shp}")
        parts[key] = t
    _check_sha(entry, where, *parts.values())
    codecs = entry.get("codecs") or {}
    scale = parts.get(name + _SCALE)
    if scale is not None and not bool((torch.isfinite(scale) & (scale > 0)).all()):
        raise ValueError(f"{where}: its scales are not all finite and positive")
    if kind == "dense":
        t = parts[name]
        if "dense" in codecs:
            t = _unpack(t, codecs["dense"], want_dtype, numel, where).reshape(shape)
        got = int(torch.count_nonzero(t))
        if t.is_floating_point() and want_dtype == _DTYPE_BY_NAME.get(entry["dtype"]) and got != nnz:
            raise ValueError(f"{where}: {got} non-zeros but {MANIFEST} says nnz={nnz}")
        if scale is not None:
            if got != nnz:
                raise ValueError(f"{where}: {got} non-zeros but {MANIFEST} says nnz={nnz}")
            return t.float() * scale[:, None]
        return t.float() if t.is_floating_point() else t
    values = parts[name + _VALUES]
    mask = parts[name + _MASK]
    if "values" in codecs:
        values = _unpack(values, codecs["values"], want_dtype, nnz, where)
    if "mask" in codecs:
        mask = _unpack(mask, codecs["mask"], torch.uint8, math.ceil(numel / 8), where)
    bits = np.unpackbits(mask.numpy())
    if bits[numel:].any():
        raise ValueError(f"{where}: mask has bits set past the tensor's {numel} elements")
    bits = torch.from_numpy(bits[:numel].astype(bool))
    pop = int(bits.sum())
    if pop != nnz:
        raise ValueError(f"{where}: mask popcount {pop} != nnz {nnz} in {MANIFEST}")
    if scale is not None and bool((values == 0).any()):
        raise ValueError(f"{where}: {int((values == 0).sum())} stored int8 value(s) are 0 where the mask says non-zero")
    out = torch.zeros(numel, dtype=torch.float32)
    out[bits] = values.float()
    out = out.reshape(shape)
    return out * scale[:, None] if scale is not None else out


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


def load_compact(d: Path) -> nn.Module:
    """The compact model in ``d``. Everything is checked before memory is allocated for it: the
    manifest against the model built from config.json on the meta device, then the shapes and
    dtypes in the safetensors header against the manifest; only then are the tensors read and
    decoded (their checksums and counts checked), and the result checked to be finite."""
    man_path = d / MANIFEST
    man = read_json(man_path)
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise ValueError(f"{man_path}: not a {FORMAT} manifest (format={man.get('format') if isinstance(man, dict) else None!r})")
    if man.get("version") not in READ_VERSIONS:
        raise ValueError(f"{man_path}: format version {man.get('version')!r}; this code reads versions "
                         f"{', '.join(map(str, READ_VERSIONS))}")
    if not isinstance(man.get("model_class", ""), str):
        raise ValueError(f"{man_path}: model_class {man.get('model_class')!r} is not a class name; load_model "
                         "builds the model class config.json's family names")
    entries, tied = _check_manifest(man, man_path)
    name = man.get("weights_file", COMPACT_WEIGHTS)
    # a plain file name in the model directory: never a path out of it
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{man_path}: weights_file {name!r} is not a file name in {d}")
    weights = file_inside(d, name, man_path)  # nor a symlink out of it
    names = [e["name"] for e in entries]
    if not (d / "config.json").is_file():
        raise FileNotFoundError(f"{d / 'config.json'}: missing (needed by the compact model in {d})")

    model = meta_model(d)  # config.json's family and sizes checked; shapes only, no memory
    # the family names its class (Family.class_name: Marian's is no ...ForConditional... one) and builds it
    want_class = family_of(model).class_name(model.config)
    if man.get("model_class") and man["model_class"] != want_class:
        raise ValueError(f"{man_path}: model_class {man['model_class']!r} but config.json describes a {want_class}")
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
        if e.get("quant") is not None:
            if not meta_sd[e["name"]].is_floating_point():
                raise ValueError(f"{man_path}: tensor {e['name']!r} is stored quantized but the model holds it as "
                                 f"{meta_sd[e['name']].dtype}")
        elif stored_dt is not None and stored_dt.is_floating_point != meta_sd[e["name"]].is_floating_point():
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
        expected.update(_stored_layout(e))
    extra = sorted(set(header) - set(expected))
    if extra:
        raise ValueError(f"{weights}: tensor(s) not described by {MANIFEST}: {extra[:5]}")
    for key, (shape, dt) in expected.items():
        if key not in header:
            raise ValueError(f"{weights}: tensor {key!r} listed in {MANIFEST} is missing from the file")
        got_shape, got_dt = header[key]
        where = f"{weights}: tensor {key!r}"
        if got_shape != shape:
            what = f"nnz={shape[0]}" if key.endswith(_VALUES) and got_dt != "U8" else f"shape {shape}"
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
        parts = ("dense",) if e["storage"] == "dense" else ("values", "mask")
        codecs, sizes = e.get("codecs", {}), e.get("stored_bytes", {})
        if (not isinstance(codecs, dict) or not isinstance(sizes, dict) or set(codecs) != set(sizes)
                or not set(codecs) <= set(parts) or not all(c == "lzma" for c in codecs.values())
                or not all(isinstance(x, int) and x >= 0 for x in sizes.values())):
            bad(f"tensor {n!r}: codecs {codecs!r} / stored_bytes {sizes!r} are not lzma parts of a "
                f"{e['storage']} tensor with their sizes")
        if e.get("quant") is not None and not isinstance(e["quant"], dict):
            bad(f"tensor {n!r}: quant {e['quant']!r} is not a table")
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
    ``compact.json`` manifest; ``dt_name`` is the value dtype (fp32, fp16, bf16, int8)."""

    tensors: dict[str, torch.Tensor] = {}
    entries: list[dict] = []
    tied: dict[str, list[str]] = {}
    canon_of: dict[int, str] = {}
    exempt = family_of(model).int8_exempt
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) in canon_of:
            tied.setdefault(canon_of[id(t)], []).append(name)
            continue
        canon_of[id(t)] = name
        entry, stored = _encode(name, t.detach().cpu(), dt_name, exempt)
        entries.append(entry)
        tensors.update(stored)

    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dt_name,
        "weights_file": COMPACT_WEIGHTS,
        "model_class": type(model).__name__,
        "mask_encoding": "numpy.packbits, big-endian bit order, row-major (C) element order",
        "checksum": "sha256 of the stored bytes (dense: the tensor; bitmask: values then mask; then the "
                    "scales of a quantized tensor)",
        "codecs": "lzma: the part stored as one xz stream of its raw bytes (stored_bytes long)",

        "total_numel": sum(e["numel"] for e in entries),
        "total_nnz": sum(e["nnz"] for e in entries),
        "tensors": entries,
        "tied": tied,
    }
    if dt_name == INT8:
        manifest["quantization"] = (f"{INT8_SCHEME}: value = int8 * scale[row] (float32 scales in "
                                    f"'<name>{_SCALE}'); zeros exact, every non-zero stored as a non-zero int8")
    return tensors, manifest


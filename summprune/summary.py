"""What ``report`` and the prune log say about a model beside its two ratios: its shape (blocks,
widths, heads: the family layer reads them), its parameters against the original model's where
that model is known, and the dtype and size of its files.

The two ratios count against the model's own parameters, so a structurally cut model (a 6->3
decoder, say) reads 1.0000 on both: only the shape and the parameters against the original show
the cut. The original is known from ``pruning.json`` (``original``, which ``run`` and ``prune``
record; ``structured.params_before`` in files written before that) or from an original model
directory given by the caller (``report --original DIR``: its config.json, built on the meta
device, no weights read).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from . import sparsity as S
from .models import STACKS, model_shape


def original_record(model: nn.Module) -> dict:
    """What ``pruning.json`` keeps of the model a run or prune started from (``original``)."""
    return {"params": S.dense_param_count(model), "shape": model_shape(model)}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def original_from(model_dir: str | Path | None = None, original_dir: str | Path | None = None) -> tuple[dict | None, str]:
    """``(record, where it came from)`` of the original of the model in ``model_dir``:
    ``original_dir``'s config.json if given (FileNotFoundError / ValueError naming it when it is
    not a model directory), else ``model_dir/pruning.json``; ``(None, "")`` where neither says."""
    if original_dir is not None:
        from .io.hf import meta_model

        d = Path(original_dir).expanduser()
        if not (d / "config.json").is_file():
            raise FileNotFoundError(f"--original {original_dir}: no config.json there; is this a model directory?")
        return original_record(meta_model(d)), f"--original {original_dir}"
    if model_dir is None:
        return None, ""
    try:
        info = json.loads((Path(model_dir) / "pruning.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, ""
    if not isinstance(info, dict):
        return None, ""
    orig = info.get("original")
    if isinstance(orig, dict) and _count(orig.get("params")):
        shape = orig.get("shape")
        ok = isinstance(shape, dict) and all(isinstance(shape.get(k), dict) and all(st in shape[k] for st in STACKS)
                                             for k in ("layers", "d_ff", "heads"))  # else the count alone
        return ({"params": orig["params"], **({"shape": shape} if ok else {})}), "pruning.json"
    structured = info.get("structured")
    before = _count(structured.get("params_before")) if isinstance(structured, dict) else None
    if before:
        return {"params": before}, "pruning.json structured.params_before"
    return None, ""


#: safetensors' dtype names -> this package's
_SAFETENSORS_DTYPES = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F64": "fp64", "I8": "int8"}


def stored_info(path: str | Path) -> dict:
    """``{"format", "dtype", "bytes"}`` of a model directory as it is on disk: the format that
    :func:`summprune.export.load_model` reads it as, the dtype its floating-point weights are
    stored in (the format's own record where it keeps one, as compact's manifest; else the
    safetensors headers', several joined by '+'), and the size of all its files.
    ``load_model`` returns fp32 whatever is stored, so a report that wants the stored dtype asks
    here. ``dtype`` is None where no weight file says it."""
    from .io.files import dir_size
    from .io.formats import detect

    p = Path(path).expanduser()
    fmt = detect(p)
    if fmt is not None and fmt.stored_dtype is not None:
        dtype = fmt.stored_dtype(p)
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
    return {"format": fmt.name if fmt is not None else None, "dtype": dtype, "bytes": dir_size(p)}


def summarize(model: nn.Module, model_dir: str | Path | None = None, original: dict | None = None,
              original_source: str = "", patterns: dict[str, str] | None = None) -> dict:
    """:func:`summprune.sparsity.report` of ``model`` plus ``shape`` (:func:`model_shape`),
    ``stored`` (format, stored dtype and bytes of ``model_dir``, where given) and, with
    ``original`` (:func:`original_record` or :func:`original_from`), ``original`` and
    ``params_vs_original`` / ``nonzero_vs_original``: its parameters and non-zeros over the
    original's parameters."""
    out = {**S.report(model, patterns), "shape": model_shape(model)}
    if model_dir is not None:
        out["stored"] = stored_info(model_dir)
    if original and _count(original.get("params")):
        out["original"] = {**original, "source": original_source}
        out["params_vs_original"] = out["dense_params"] / original["params"]
        out["nonzero_vs_original"] = out["nonzero"] / original["params"]
    return out


def shape_text(shape: dict) -> str:
    """'encoder 6 blocks, decoder 3 blocks; d_model 512; d_ff 2048; heads 8' (d_ff and heads per
    stack where they differ, d_ff per block where the blocks of a stack differ)."""
    if "layers" not in shape:
        return f"d_model {shape.get('d_model')}"
    layers = ", ".join(f"{k} {shape['layers'][k]} block{'s' if shape['layers'][k] != 1 else ''}" for k in STACKS)

    def per_stack(values: dict, fmt) -> str:
        texts = {k: fmt(values[k]) for k in STACKS}
        if len(set(texts.values())) == 1:
            return texts[STACKS[0]]
        return " / ".join(f"{k} {texts[k]}" for k in STACKS)

    def widths(ws: list[int]) -> str:
        return str(ws[0]) if len(set(ws)) == 1 else "[" + ", ".join(map(str, ws)) + "]"

    return (f"{layers}; d_model {shape['d_model']}; d_ff {per_stack(shape['d_ff'], lambda ws: widths(ws) if ws else '-')}; "
            f"heads {per_stack(shape['heads'], str)}")


def summary_lines(s: dict) -> list[str]:
    """The lines of a :func:`summarize` result, before the group table."""
    sh = s["shape"]
    line = f"model: {sh['family']}, {shape_text(sh)}"
    orig = s.get("original") or {}
    if isinstance(orig.get("shape"), dict) and orig["shape"] != sh:
        line += f" (the original: {shape_text(orig['shape'])})"
    lines = [line]
    st = s.get("stored")
    if st:
        lines.append(f"stored: {st['format'] or 'unknown'} format, {st['dtype'] or 'dtype not recorded'}, "
                     f"{st['bytes'] / 1e6:,.1f} MB on disk ({st['bytes']:,} bytes)")
    if "params_vs_original" in s:
        lines.append(f"parameters: {s['dense_params']:,} = {s['params_vs_original']:.4f} of the original's "
                     f"{orig['params']:,} (the original: {orig['source']})")
        lines.append(f"non-zero: {s['nonzero']:,} = {s['nonzero_ratio']:.4f} of its own parameters, "
                     f"{s['nonzero_vs_original']:.4f} of the original's")
    else:
        lines.append(f"parameters: {s['dense_params']:,}; the original is not known (no pruning.json records it: "
                     "--original DIR names it)")
    return lines


def format_summary(s: dict) -> str:
    """:func:`summary_lines` then the per-group table of the two ratios."""
    return "\n".join([*summary_lines(s), S.format_table(s)])

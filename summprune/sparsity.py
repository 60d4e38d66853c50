"""Two honest numbers about a pruned model, overall and per layer group.

``mask_ratio`` is the course's formula: (parameters - zeros in all prune masks) / parameters,
parameters counted once each as ``model.parameters()`` yields them and each mask buffer once.

``nonzero_ratio`` is what the model really computes with: the non-zero values of every distinct
tensor the forward pass uses (a pruned module uses ``weight_orig * weight_mask``; two modules that
share both compute with one tensor), over the dense model's parameter count. They differ when
lm_head is masked but its tied embedding is not (``tie_mode='course'``): the mask's zeros are
counted while the inputs still use the dense copy.
"""

from __future__ import annotations

import torch
from torch import nn

from .modeling import group_modules


def _effective_tensors(model: nn.Module) -> dict[tuple, tuple[str, torch.Tensor]]:
    """Distinct tensors used in forward: key -> (first module.param name, tensor)."""
    out: dict[tuple, tuple[str, torch.Tensor]] = {}
    for mname, mod in model.named_modules():
        for pname, p in mod._parameters.items():
            if p is None:
                continue
            if pname.endswith("_orig"):
                base = pname[: -len("_orig")]
                mask = mod._buffers[f"{base}_mask"]
                key = ("masked", id(p), id(mask))
                if key not in out:
                    out[key] = (f"{mname}.{base}", p.detach() * mask)
            else:
                key = ("param", id(p))
                if key not in out:
                    out[key] = (f"{mname}.{pname}", p.detach())
    return out


def dense_param_count(model: nn.Module) -> int:
    """Parameters of the dense architecture, each distinct tensor once.

    If lm_head holds a tensor of its own while the architecture ties the output projection to the
    embedding by nature (t5-small, BART, Pegasus; ``tie_mode`` 'untie' or 'course'), that copy is
    not part of the dense model and is not counted, so all ratios share t5-small's 60,506,624
    denominator. A model untied by nature (flan-T5, mT5) counts its lm_head: transformers 5
    marks every T5 config tied, so the family says which it is (``Family.native_tied``).
    """
    from .models import family_of

    seen: set[int] = set()
    total = 0
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    skip = None
    if head is not None and emb is not None and family_of(model).native_tied(model.config):
        hw = head._parameters.get("weight_orig", head._parameters.get("weight"))
        ew = emb._parameters.get("weight_orig", emb._parameters.get("weight"))
        if hw is not ew:
            skip = id(hw)
    for p in model.parameters():
        if id(p) in seen or id(p) == skip:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def mask_ratio(model: nn.Module) -> float:
    """The course's ratio. Once pruning is permanent (no masks left), the masks' zeros are zeros
    in the weights, so those are counted instead; for a model saved by this package prefer
    :func:`recorded_mask_ratio`, the number measured before export."""
    total = sum(p.numel() for p in model.parameters())
    masks = [b for n, b in model.named_buffers() if n.endswith("_mask")]
    if masks:
        zeros = sum(int((b == 0).sum()) for b in masks)
    else:
        zeros = sum(int((p == 0).sum()) for p in model.parameters())
    return (total - zeros) / total


def recorded_mask_ratio(model_dir, warn=None) -> float | None:
    """``final.mask_ratio`` of ``model_dir/pruning.json`` (the course ratio measured at export,
    while the masks existed), or None if absent or unusable (``warn`` is told why)."""
    import json
    from pathlib import Path

    path = Path(model_dir) / "pruning.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["final"]["mask_ratio"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        if warn:
            warn(f"{path}: no usable final.mask_ratio ({type(e).__name__}: {e}); counting the model instead")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        if warn:
            warn(f"{path}: final.mask_ratio {value!r} is not a number in [0, 1]; counting the model instead")
        return None
    return float(value)


def nonzero_count(model: nn.Module) -> int:
    """Finite non-zero values the model computes with (a NaN or inf is not a usable weight; see
    ``export.check_finite``, which refuses to save such a model)."""
    return sum(int(((t != 0) & torch.isfinite(t)).sum()) for _, t in _effective_tensors(model).values())


def nonzero_ratio(model: nn.Module) -> float:
    return nonzero_count(model) / dense_param_count(model)


@torch.no_grad()
def group_table(model: nn.Module, patterns: dict[str, str] | None = None) -> dict[str, dict]:
    """Per group: params, mask_ratio (1 - mask zeros / params), nonzero_ratio (of the tensors
    the group's modules compute with)."""
    rows: dict[str, dict] = {}
    for g, mods in group_modules(model, patterns).items():
        params = zeros = nnz = 0
        for _, m in mods:
            n = m.weight.numel() if "weight_orig" not in m._parameters else m.weight_orig.numel()
            params += n
            if "weight_mask" in m._buffers:
                zeros += int((m.weight_mask == 0).sum())
                nnz += int(torch.count_nonzero(m.weight_orig * m.weight_mask))
            else:
                nnz += int(torch.count_nonzero(m.weight))
        rows[g] = {"params": params, "mask_ratio": (params - zeros) / params, "nonzero_ratio": nnz / params}
    # The input embedding is a row of its own when it is not the very tensor lm_head computes
    # with ('course' and 'untie' modes): then it is dense work that the group table would hide.
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    ekey = _tensor_key(emb)
    if ekey != _tensor_key(head):
        w = emb.weight_orig * emb.weight_mask if "weight_mask" in emb._buffers else emb.weight
        rows["input_embedding"] = {"params": w.numel(),
                                   "mask_ratio": float((emb.weight_mask != 0).float().mean()) if "weight_mask" in emb._buffers else 1.0,
                                   "nonzero_ratio": int(torch.count_nonzero(w)) / w.numel()}
    return rows


def _tensor_key(mod: nn.Module) -> tuple:
    if "weight_orig" in mod._parameters:
        return ("masked", id(mod.weight_orig), id(mod.weight_mask))
    return ("param", id(mod.weight))


def report(model: nn.Module, patterns: dict[str, str] | None = None) -> dict:
    """``{"mask_ratio", "nonzero_ratio", "nonzero", "dense_params", "groups": {...}}``."""
    nnz = nonzero_count(model)
    dense = dense_param_count(model)
    return {
        "mask_ratio": mask_ratio(model),
        "nonzero_ratio": nnz / dense,
        "nonzero": nnz,
        "dense_params": dense,
        "groups": group_table(model, patterns),
    }


def format_table(rep: dict) -> str:
    """A fixed-width text table of a report, for logs and the CLI."""
    lines = [f"{'group':<16}{'params':>12}{'mask_ratio':>12}{'nonzero_ratio':>15}"]
    for g, r in rep["groups"].items():
        lines.append(f"{g:<16}{r['params']:>12,}{r['mask_ratio']:>12.4f}{r['nonzero_ratio']:>15.4f}")
    lines.append(f"{'model':<16}{rep['dense_params']:>12,}{rep['mask_ratio']:>12.4f}{rep['nonzero_ratio']:>15.4f}")
    return "\n".join(lines)

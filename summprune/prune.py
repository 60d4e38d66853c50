"""Apply pruning stages to layer groups, handle the tied embedding, make pruning permanent.

Semantics follow ``torch.nn.utils.prune``: a stage's ``amount`` for a group is the fraction of the
weights *still unpruned* in that group to remove, chosen globally (one L1 threshold over all the
group's Linear weights). Applying amount ``a`` k times therefore leaves ``(1 - a) ** k`` of the
group. Masks live in ``weight_mask`` buffers and the trainable tensor in ``weight_orig`` until
``make_permanent``; the forward pre-hook recomputes ``weight = weight_orig * weight_mask`` before
every forward, so masked weights stay zero whatever the optimizer does to ``weight_orig``.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from torch.nn.utils import prune

from .modeling import group_modules, tied_parameter_modules


def untie_lm_head(model: nn.Module) -> bool:
    """Give ``lm_head`` its own copy of the shared embedding (for ``tie_mode='untie'``).

    Returns True if it was tied. The decoder-output scaling of tied T5 is a config flag
    (``scale_decoder_outputs``) in transformers 5, so outputs are unchanged by untying.
    """
    head = model.get_output_embeddings()
    emb = model.get_input_embeddings()
    if head.weight is not emb.weight:
        return False
    head.weight = nn.Parameter(emb.weight.detach().clone())
    return True


def is_pruned(module: nn.Module, name: str = "weight") -> bool:
    return prune.is_pruned(module) and f"{name}_mask" in module._buffers


def prune_group(modules: list[nn.Module], amount: float) -> None:
    """Global L1 unstructured pruning of ``amount`` of the still-unpruned weights of ``modules``."""
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount={amount}: must be in [0, 1) (fraction of unpruned weights)")
    if amount == 0.0 or not modules:
        return
    # Rank by the weights as they are now: torch's default score is the cached ``weight`` the
    # pruning hook set at the last forward pass, one optimizer step stale after recovery.
    scores = {(m, "weight"): (m.weight_orig * m.weight_mask).detach() if is_pruned(m) else m.weight.detach()
              for m in modules}
    prune.global_unstructured([(m, "weight") for m in modules], pruning_method=prune.L1Unstructured,
                              importance_scores=scores, amount=amount)


def sync_tied_masks(model: nn.Module) -> None:
    """In ``tied`` mode, make every user of the lm_head tensor share lm_head's mask *object*.

    T5 uses one Parameter in four modules (shared, encoder/decoder embed_tokens, lm_head).
    Sharing the mask object means the inputs and the output projection compute with the same
    pruned tensor, and the mask is counted once (``named_buffers`` de-duplicates by identity).
    """
    head = model.get_output_embeddings()
    if not is_pruned(head):
        return
    orig = head.weight_orig
    mask = head.weight_mask
    for name, mod in tied_parameter_modules(model, orig):
        if mod is head:
            continue
        if not is_pruned(mod):
            prune.identity(mod, "weight")
        mod._buffers["weight_mask"] = mask
        # Recompute the cached attribute now so that code reading ``.weight`` outside a
        # forward (e.g. get_input_embeddings().weight) also sees the pruned tensor.
        setattr(mod, "weight", orig * mask)


def apply_stage(model: nn.Module, amounts: dict[str, float], patterns: dict[str, str] | None = None,
                tie_mode: str = "tied") -> None:
    """Prune each named group by its amount (see module docstring for the semantics)."""
    groups = group_modules(model, patterns)
    unknown = sorted(set(amounts) - set(groups))
    if unknown:
        raise ValueError(f"unknown group(s) {unknown}; known groups: {sorted(groups)}")
    for g, amount in amounts.items():
        prune_group([m for _, m in groups[g]], amount)
    if tie_mode == "tied":
        sync_tied_masks(model)


def prepare_model(model: nn.Module, tie_mode: str) -> None:
    """Set up the tied embedding before the first stage according to ``tie_mode``."""
    if tie_mode == "untie":
        untie_lm_head(model)
    elif tie_mode not in ("tied", "course"):
        raise ValueError(f"tie_mode={tie_mode!r}: choose 'tied', 'untie' or 'course'")


@torch.no_grad()
def make_permanent(model: nn.Module) -> nn.Module:
    """Fold masks into the weights and drop the pruning hooks, keeping ties where they hold.

    Unlike ``prune.remove`` (which creates a new Parameter and so silently unties lm_head from
    the embedding), a tensor whose every user shares one mask is zeroed in place and re-attached
    to all of them, so a tied model stays tied. A tensor that some users see masked and others
    dense (``tie_mode='course'``) is split: each mask gets its own pruned copy and the dense users
    keep the original, which is exactly what the course's model computes with.
    """
    users: dict[int, list[nn.Module]] = defaultdict(list)  # id(orig) -> modules using it
    origs: dict[int, nn.Parameter] = {}
    for mod in model.modules():
        p = mod._parameters.get("weight_orig", mod._parameters.get("weight"))
        if isinstance(p, nn.Parameter):
            users[id(p)].append(mod)
            origs[id(p)] = p
    for key, mods in users.items():
        pruned = [m for m in mods if is_pruned(m)]
        if not pruned:
            continue
        orig = origs[key]
        masks = {id(m.weight_mask): m.weight_mask for m in pruned}
        shared = len(masks) == 1 and len(pruned) == len(mods)
        if shared:
            orig.mul_(next(iter(masks.values())).to(orig.dtype))
        for m in pruned:
            mask = m.weight_mask
            _drop_hooks(m)
            if shared:
                m.register_parameter("weight", orig)
            else:
                m.register_parameter("weight", nn.Parameter(orig.detach() * mask.to(orig.dtype)))
    return model


def _drop_hooks(module: nn.Module, name: str = "weight") -> None:
    for k, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == name:
            del module._forward_pre_hooks[k]
    del module._parameters[f"{name}_orig"]
    del module._buffers[f"{name}_mask"]
    if name in module.__dict__:
        delattr(module, name)

"""Apply pruning stages to layer groups, handle the tied embedding, make pruning permanent.

Semantics follow ``torch.nn.utils.prune``: a stage's ``amount`` for a group is the fraction of the
weights *still unpruned* in that group to remove, chosen globally (one L1 threshold over all the
group's Linear weights). Applying amount ``a`` k times therefore leaves ``(1 - a) ** k`` of the
group. Masks live in ``weight_mask`` buffers and the trainable tensor in ``weight_orig`` until
``make_permanent``; the forward pre-hook recomputes ``weight = weight_orig * weight_mask`` before
every forward, so masked weights stay zero whatever the optimizer does to ``weight_orig``.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune
from tqdm.auto import tqdm

from .allocate import integerize
from .modeling import group_modules, tied_parameter_modules
from .ties import TieMode


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


def current_weight(module: nn.Module) -> torch.Tensor:
    """The tensor a (possibly pruned) module computes with *now*: ``weight_orig * weight_mask``.

    Ranking must use this, not the module's cached ``weight`` attribute: the pruning hook sets
    that at the last forward pass, one optimizer step stale after recovery training.
    """
    if is_pruned(module):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def unpruned_count(module: nn.Module) -> int:
    """Weights of ``module`` its mask still keeps (all of them if it has no mask)."""
    return int(module.weight_mask.sum()) if is_pruned(module) else module.weight.numel()


def prune_to_counts(model: nn.Module, keep: dict[str, int], patterns: dict[str, str] | None = None,
                    tie_mode: str = "tied", scores: dict[nn.Module, torch.Tensor] | None = None) -> dict[str, int]:
    """The one way weights are cut: each group (L1, one threshold over all the group's Linear
    weights) down to exactly ``keep[g]`` unpruned weights. torch's ``amount`` is given as an
    integer, a number of weights, which torch does not round. Returns how many each group lost.

    ``scores`` (per module, the weight's shape) replaces the magnitude ``|weight_orig * mask|``
    as the importance, e.g. Wanda's ``|W| * ||X||`` (:func:`wanda_scores`).
    """
    groups = named_groups(model, patterns, keep)
    pruned = {}
    for g, k in keep.items():
        mods = [m for _, m in groups[g]]
        now = sum(unpruned_count(m) for m in mods)
        n = now - int(k)
        if n < 0:
            raise ValueError(f"group {g}: asked to keep {k} weights but only {now} are unpruned")
        if n > 0:
            prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured,
                                      importance_scores={(m, "weight"): (scores[m] if scores is not None and m in scores
                                                                         else current_weight(m)) for m in mods},
                                      amount=int(n))
        pruned[g] = n
    if TieMode.of(tie_mode).shares_mask:
        sync_tied_masks(model)
    return pruned


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _accumulate_inputs(model: nn.Module, modules: list[nn.Module], batches: list[dict], add,
                       progress: bool = True, desc: str = "calibration batches") -> None:
    """Run ``batches`` through ``model`` (eval mode, teacher forcing) calling ``add(module, x)``
    with each module's input flattened to ``(tokens, in_features)`` as the forward computed it
    (its dtype, on its device; ``add`` converts). A tqdm bar counts the batches."""

    def hook(mod, args):  # returns None: a pre-hook's return value would replace the input
        x = args[0].detach()
        add(mod, x.reshape(-1, x.shape[-1]))

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    was_training = model.training
    model.eval()
    device = _model_device(model)
    try:
        for b in tqdm(batches, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True):
            model(**{k: v.to(device) for k, v in b.items()})
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


@torch.no_grad()
def shared_input_groups(model: nn.Module, modules: list[nn.Module], batch: dict) -> list[list[nn.Module]]:
    """``modules`` grouped by the input tensor they receive, from one forward pass of the first
    example of ``batch``: modules whose every call got the very same tensor (the same storage
    address, dtype, shape, strides and version) form one group, e.g. the q/k/v projections of an
    attention block, or the key/value projections of every cross-attention layer (all fed the
    encoder's output). Nothing model-specific: a module fed its own tensor is a group alone.
    Groups keep the order of ``modules``.

    Every input is held until the grouping is done, so no freed tensor's address can be reused
    by another one and pass for it; the version counter tells apart a tensor changed in place
    between two calls."""
    calls: dict[nn.Module, list[tuple]] = {m: [] for m in modules}
    held: list[torch.Tensor] = []

    def hook(mod, args):
        x = args[0]
        held.append(x)
        calls[mod].append((x.device, x.dtype, x.data_ptr(), tuple(x.shape), x.stride(), x._version))

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    was_training = model.training
    model.eval()
    device = _model_device(model)
    try:
        model(**{k: v[:1].to(device) for k, v in batch.items()})
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    groups: dict[tuple, list[nn.Module]] = {}
    for m in modules:
        # a module the pass never called has no input to share: it stays alone
        key = tuple(calls[m]) if calls[m] else ("not called", id(m))
        groups.setdefault(key, []).append(m)
    del held
    return list(groups.values())


def activation_norms(model: nn.Module, modules: list[nn.Module], batches: list[dict],
                     progress: bool = True) -> dict[nn.Module, torch.Tensor]:
    """``||X_j||_2`` of every input feature ``j`` of each module over the tokens of ``batches``
    (a forward pass with labels, teacher forcing), for Wanda's importance. Summed in float64 on
    the model's device (one vector per module: float64 costs nothing here)."""
    device = _model_device(model)
    sums = {m: torch.zeros(m.in_features, dtype=torch.float64, device=device) for m in modules}
    _accumulate_inputs(model, modules, batches,
                       lambda m, x: sums[m].add_(x.float().pow(2).sum(0, dtype=torch.float64)),
                       progress=progress, desc="activation norms")
    return {m: s.sqrt().float() for m, s in sums.items()}


def wanda_scores(model: nn.Module, modules: list[nn.Module], batches: list[dict],
                 progress: bool = True) -> dict[nn.Module, torch.Tensor]:
    """Wanda (Sun et al. 2023): weight ``W_ij`` matters as ``|W_ij| * ||X_j||_2``, its magnitude
    times the norm of the input feature it multiplies, measured on calibration ``batches``."""
    norms = activation_norms(model, modules, batches, progress=progress)
    return {m: current_weight(m).abs() * norms[m].to(current_weight(m).device) for m in modules}


def input_hessians(model: nn.Module, modules: list[nn.Module], batches: list[dict], *,
                   dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                   share: bool = True, progress: bool = True) -> dict[nn.Module, torch.Tensor]:
    """``X^T X`` (``in_features`` square) of each module's inputs over the tokens of ``batches``
    (teacher forcing): the layer-wise Hessian of the squared reconstruction error.

    Accumulated in ``dtype`` (float32, as SparseGPT does; float64 for the old behaviour) on
    ``device`` (default: the model's). With ``share``, modules that receive the same input
    tensor (:func:`shared_input_groups`) get one Hessian, computed once: their entries in the
    returned dict are the same tensor object, which :func:`obs_step` uses to solve them together.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    groups = shared_input_groups(model, modules, batches[0]) if share and batches else [[m] for m in modules]
    hs: dict[nn.Module, torch.Tensor] = {}
    leaders = []
    for grp in groups:
        h = torch.zeros(grp[0].in_features, grp[0].in_features, dtype=dtype, device=device)
        hs.update((m, h) for m in grp)
        leaders.append(grp[0])

    def add(m, x):
        x = x.to(device=device, dtype=dtype)
        hs[m].addmm_(x.T, x)

    _accumulate_inputs(model, leaders, batches, add, progress=progress,
                       desc=f"OBS input Hessians ({len(leaders)} for {len(modules)} modules)")
    return hs


def _inverse_hessian_factor(hessian: torch.Tensor, damp: float, dtype: torch.dtype,
                            device: torch.device) -> torch.Tensor:
    """``U``, the upper Cholesky factor of the damped inverse Hessian (``U^T U = H^-1``), in
    ``dtype`` on ``device``.

    Inputs that are always 0 (zero diagonal) get a 1 there: nothing to compensate with, and the
    matrix stays invertible. ``U`` comes from one Cholesky factorization and one triangular
    inverse instead of SparseGPT's three factorizations (Cholesky, inverse, Cholesky again):
    with ``J`` the order reversal, ``J H J = L L^T`` gives ``H = R R^T`` with ``R = J L J``
    upper triangular, so ``U = R^-1``. The damping (``damp`` times the mean diagonal) keeps float32
    well-conditioned; should the factorization still fail in a lower precision, it is redone in
    float64 rather than giving up."""
    H = hessian.to(device=device, dtype=dtype, copy=True)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    H.diagonal().add_(damp * torch.diag(H).mean())
    L, info = torch.linalg.cholesky_ex(H.flip(0, 1))
    if int(info) == 0:
        eye = torch.eye(H.shape[0], dtype=dtype, device=device)
        return torch.linalg.solve_triangular(L.flip(0, 1), eye, upper=True)
    if dtype == torch.float64:
        raise torch.linalg.LinAlgError("OBS: the damped input Hessian is not positive definite")
    return _inverse_hessian_factor(hessian, damp, torch.float64, device).to(dtype)


def obs_prune_rows(weights: list[torch.Tensor], hessian: torch.Tensor, pruned: list[torch.Tensor],
                   n_new: list[int], update: bool = True, damp: float = 0.01, block: int = 128,
                   dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`obs_prune_weight` for several weights that share one input Hessian, in one solve:
    their rows are stacked (OBS treats every row alike, given the Hessian), so one Cholesky and
    one column loop serve all of them. Each weight gets exactly its own ``n_new`` new cuts
    (chosen among its own rows). Solved in ``dtype`` on ``device`` (default: the first weight's).
    Returns ``(new weight, keep mask)`` per weight, each in its weight's dtype and device."""
    device = torch.device(device) if device is not None else weights[0].device
    rows = [w.shape[0] for w in weights]
    W = torch.cat([w.detach().to(device=device, dtype=dtype) for w in weights], 0)
    cut = torch.cat([p.to(device=device, dtype=torch.bool) for p in pruned], 0)
    cols = W.shape[1]
    U = _inverse_hessian_factor(hessian, damp, dtype, device)
    saliency = W.pow(2) / torch.diag(U).pow(2)
    saliency.masked_fill_(cut, float("inf"))  # not candidates: they are cut already
    start = 0
    for r, n in zip(rows, n_new):
        if n > 0:  # each weight's own least salient: its count stays exactly as asked
            cut[start:start + r].view(-1)[torch.topk(saliency[start:start + r].reshape(-1), int(n),
                                                     largest=False).indices] = True
        start += r
    del saliency
    if update:
        # Column-major copy: the loop reads one column and updates the columns to its right, so
        # with the transpose both are contiguous rows of memory.
        Wt, cutt = W.T.contiguous(), cut.T.to(dtype)
        for i1 in range(0, cols, block):
            i2 = min(i1 + block, cols)
            W1, U1 = Wt[i1:i2], U[i1:i2, i1:i2]
            # e_i = w_i / U_ii where cut, 0 where kept: the scale is known for the whole block
            scale = cutt[i1:i2] / torch.diag(U1).unsqueeze(1)
            err = torch.empty_like(W1)
            for i in range(i2 - i1):
                torch.mul(W1[i], scale[i], out=err[i])
                W1[i:].addr_(U1[i, i:], err[i], alpha=-1.0)
            Wt[i2:].addmm_(U[i1:i2, i2:].T, err, alpha=-1.0)  # the block's error, to every later column
        W = Wt.T
    W = W.masked_fill(cut, 0.0)
    out, start = [], 0
    for w, r in zip(weights, rows):
        out.append((W[start:start + r].to(device=w.device, dtype=w.dtype).contiguous(),
                    ~cut[start:start + r].to(w.device)))
        start += r
    return out


def obs_prune_weight(weight: torch.Tensor, hessian: torch.Tensor, pruned: torch.Tensor, n_new: int,
                     update: bool = True, damp: float = 0.01, block: int = 128,
                     dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal-Brain-Surgeon pruning of one Linear weight, as SparseGPT does it (Frantar & Alistarh
    2023) but with one mask chosen up front: the ``n_new`` still-unpruned weights of least
    saliency ``w^2 / [U]_jj^2`` (``U`` the upper Cholesky factor of the damped inverse Hessian)
    are cut, and, with ``update``, every weight to the right of a cut one in its row is moved to
    compensate the layer's output error, column by column in blocks of ``block``. ``pruned``
    (bool, the weight's shape) are the weights cut before; they stay cut. Solved in ``dtype``
    (float32 by default, float64 selectable) on ``device`` (default: the weight's).
    Returns ``(new weight, keep mask)``."""
    return obs_prune_rows([weight], hessian, [pruned], [n_new], update=update, damp=damp, block=block,
                          dtype=dtype, device=device)[0]


def obs_step(model: nn.Module, keep: dict[str, int], patterns: dict[str, str] | None, tie_mode: str,
             batches: list[dict], *, hessian_dtype: torch.dtype = torch.float32,
             solve_dtype: torch.dtype = torch.float32, share_inputs: bool = True,
             device: torch.device | str | None = None, hessians: dict[nn.Module, torch.Tensor] | None = None,
             progress: bool = True, log=None) -> dict[str, int]:
    """One pruning step with OBS (:func:`obs_prune_weight`): each group down to exactly ``keep[g]``
    weights, its new cuts spread over its modules in proportion to their unpruned weights (uniform
    within the group), the remaining weights updated from ``batches``' input Hessians. The tied
    embedding (``tie_mode='tied'``) gets the OBS mask but no update: its rows are also the input
    embeddings, which the output-side Hessian knows nothing of.

    Hessians (:func:`input_hessians`) in ``hessian_dtype``, the solve in ``solve_dtype``, both on
    ``device`` (default: the model's). With ``share_inputs``, modules fed the same input share
    one Hessian and, where they are updated alike, one solve (:func:`obs_prune_rows`).
    ``hessians`` (as :func:`input_hessians` returns them) skips measuring them. float64, on the
    CPU, without sharing computes what this function did before these options existed (the
    inverse-Hessian factor now comes by a cheaper route: equal up to float64 rounding). ``log`` gets one line
    before the measurement and one with the times; tqdm bars (``progress``) count batches and
    solves."""
    say = log or (lambda s: None)
    groups = named_groups(model, patterns, keep)
    mods = [m for g in keep for _, m in groups[g]]
    head = model.get_output_embeddings()
    t0 = time.perf_counter()
    measured = hessians is None
    if measured:
        say(f"OBS: input Hessians of {len(mods)} modules from {len(batches)} batches "
            f"({str(hessian_dtype).replace('torch.', '')}{', shared inputs' if share_inputs else ''})")
        hessians = input_hessians(model, mods, batches, dtype=hessian_dtype, device=device, share=share_inputs,
                                  progress=progress)
    t1 = time.perf_counter()
    cuts: dict[nn.Module, int] = {}
    for g, k in keep.items():
        ms = [m for _, m in groups[g]]
        unpruned = [unpruned_count(m) for m in ms]
        n = sum(unpruned) - int(k)
        if n < 0:
            raise ValueError(f"group {g}: asked to keep {k} weights but only {sum(unpruned)} are unpruned")
        # per-module cuts in proportion to their unpruned weights, summing to n exactly
        c = integerize({j: n * u / max(1, sum(unpruned)) for j, u in enumerate(unpruned)}, n,
                       dict(enumerate(unpruned)))
        cuts.update((m, c[j]) for j, m in enumerate(ms))
    # One solve per (shared Hessian, update or not): the tied head, mask only, never joins others.
    solves: dict[tuple, list[nn.Module]] = {}
    for m in mods:
        update = not (m is head and TieMode.of(tie_mode).shares_mask)
        key = (id(hessians[m]), update) if share_inputs else (id(m),)
        solves.setdefault(key, []).append(m)
    scores = {}
    bar = tqdm(list(solves.values()), desc=f"OBS solve ({len(mods)} modules)", unit="solve",
               disable=not progress, dynamic_ncols=True)
    for ms in bar:
        update = not (ms[0] is head and TieMode.of(tie_mode).shares_mask)
        ws = [current_weight(m) for m in ms]
        pruned = [(m.weight_mask == 0) if is_pruned(m) else torch.zeros_like(w, dtype=torch.bool) for m, w in zip(ms, ws)]
        if not any(cuts[m] for m in ms):
            # no new cut: the update would move nothing (every earlier cut weight is already 0)
            results = [(w, ~p) for w, p in zip(ws, pruned)]
        else:
            results = obs_prune_rows(ws, hessians[ms[0]], pruned, [cuts[m] for m in ms], update=update,
                                     dtype=solve_dtype, device=device)
        for m, (new_w, kept) in zip(ms, results):
            with torch.no_grad():
                (m.weight_orig if is_pruned(m) else m.weight).copy_(new_w)
            scores[m] = kept.float()  # prune_to_counts cuts exactly the zeros: the OBS mask
    out = prune_to_counts(model, keep, patterns, tie_mode, scores=scores)
    say(f"OBS: {len(mods)} modules in {len(solves)} solves; "
        + (f"Hessians {t1 - t0:.1f} s, " if measured else "") + f"solve {time.perf_counter() - t1:.1f} s")
    return out


def stage_keep(model: nn.Module, amounts: dict[str, float], patterns: dict[str, str] | None = None) -> dict[str, int]:
    """Weights each group keeps after a stage of ``amounts`` (torch.nn.utils.prune semantics: the
    fraction of the still-unpruned weights to remove; ``schedules.amount_counts``)."""
    from .schedules import amount_counts

    groups = named_groups(model, patterns, amounts)
    return {g: amount_counts(sum(unpruned_count(m) for _, m in groups[g]), [a])[0] for g, a in amounts.items()}


def named_groups(model: nn.Module, patterns: dict[str, str] | None, names) -> dict:
    """The model's groups, or ValueError if ``names`` holds one it does not have."""
    groups = group_modules(model, patterns)
    unknown = sorted(set(names) - set(groups))
    if unknown:
        raise ValueError(f"unknown group(s) {unknown}; known groups: {sorted(groups)}")
    return groups


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
    prune_to_counts(model, stage_keep(model, amounts, patterns), patterns, tie_mode)


def prepare_model(model: nn.Module, tie_mode: str) -> None:
    """Set up the tied embedding before the first stage according to ``tie_mode``."""
    if TieMode.of(tie_mode).unties_head:  # ValueError naming the choices for an unknown mode
        untie_lm_head(model)


@torch.no_grad()
def make_permanent(model: nn.Module) -> nn.Module:
    """Fold masks into the weights and drop the pruning hooks, keeping ties where they hold.

    A tensor whose every user shares one mask is zeroed in place and re-attached to all of them,
    so a tied model stays tied. A tensor that some users see masked and others dense
    (``tie_mode='course'``) is split: each mask gets its own pruned copy and the dense users keep
    the original, which is exactly what the course's model computes with. ``prune.remove`` cannot
    do that: on torch 2.13 it writes ``weight_orig * mask`` into the original Parameter, which the
    tied embedding shares, so the course mode's dense embedding would be zeroed too.
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


def has_masks(model: nn.Module) -> bool:
    return any(n.endswith("_mask") for n, _ in model.named_buffers()) or any(
        n.endswith("_orig") for n, _ in model.named_parameters())


def permanent_copy(model: nn.Module) -> nn.Module:
    """The model with pruning folded in; a copy if it had masks, else the model itself.

    make_permanent mutates only the ``*_orig`` parameters (zeroing them in place), so only those
    are copied; masks, buffers and unpruned parameters are shared with the caller's model (the
    copy is only read, then dropped). That halves the memory and time of a full deep copy.
    """
    if not has_masks(model):
        return model
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

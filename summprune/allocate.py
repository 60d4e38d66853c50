"""How many weights each layer group keeps: the budget of a target honest ``nonzero_ratio``.

The honest ratio counts every tensor the model computes with, so the prunable budget is
``floor(target * dense_params) - fixed``, where ``fixed`` is what pruning cannot touch (layer norms,
T5's relative attention bias, and in ``tie_mode='course'``/``'untie'`` the dense input embedding).
With ``tie_mode='tied'`` the shared embedding is the ``lm_head`` group: pruning it prunes the
embedding for both of its uses, and at low ratios it has to be pruned like every other group.

Allocations (each returns whole numbers of kept weights per group summing to the budget exactly):

``uniform``    every group keeps the same fraction of its weights (capped at what it still has).
``global``     one L1 threshold over every prunable weight of every group.
``reference``  the course recipe's proportions: group ``g`` keeps ``r_g ** c`` of its weights,
               ``r_g`` what the six stages of configs/seed.toml leave it, ``c`` solved for the
               target (the recipe run for more, or fewer, equal stages).
``auto``       per-group sensitivity curves (validation loss with that group alone pruned to
               several levels, measured by ``measure_sensitivity``) and the allocation with the
               least predicted loss: the sum of per-group loss increases, each curve
               interpolated piecewise-linearly and convexified, is minimised under the budget
               by taking the cheapest (loss per weight) segments first -- the Lagrangian
               solution of the convexified problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


#: configs/seed.toml, the course's recipe: (per-group amounts, repeat).
REFERENCE_RECIPE = (
    ({"enc_self_attn": 0.1, "enc_ffn": 0.1, "dec_self_attn": 0.3, "cross_attn": 0.2, "dec_ffn": 0.3,
      "lm_head": 0.3}, 5),
    ({"enc_self_attn": 0.0, "enc_ffn": 0.0, "dec_self_attn": 0.1, "cross_attn": 0.1, "dec_ffn": 0.1,
      "lm_head": 0.2}, 1),
)

DEFAULT_LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


def reference_keep() -> dict[str, float]:
    """Fraction of each group the course recipe keeps (e.g. enc_ffn 0.59, lm_head 0.13)."""
    keep: dict[str, float] = {}
    for amounts, repeat in REFERENCE_RECIPE:
        for g, a in amounts.items():
            keep[g] = keep.get(g, 1.0) * (1.0 - a) ** repeat
    return keep


# ----------------------------------------------------------------------------- whole numbers


def integerize(real: dict[str, float], total: int, caps: dict[str, int]) -> dict[str, int]:
    """Whole numbers near ``real`` with ``0 <= n_g <= caps[g]`` summing to ``total`` exactly
    (largest remainders first)."""
    if not 0 <= total <= sum(caps.values()):
        raise ValueError(f"total {total} outside [0, {sum(caps.values())}]")
    out = {g: min(caps[g], max(0, math.floor(real[g]))) for g in real}
    diff = total - sum(out.values())
    order = sorted(real, key=lambda g: real[g] - math.floor(real[g]), reverse=diff > 0)
    while diff != 0:
        moved = False
        for g in order:
            if diff > 0 and out[g] < caps[g]:
                out[g] += 1
                diff -= 1
                moved = True
            elif diff < 0 and out[g] > 0:
                out[g] -= 1
                diff += 1
                moved = True
            if diff == 0:
                break
        if not moved:  # pragma: no cover - excluded by the range check above
            raise RuntimeError("cannot distribute the budget")
    return out


def _solve_monotone(fn: Callable[[float], float], target: float, lo: float, hi: float) -> float:
    """x in [lo, hi] with fn(x) ~= target for a non-increasing fn (bisection)."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if fn(mid) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------- allocations


def uniform(params: dict[str, int], unpruned: dict[str, int], budget: int) -> dict[str, int]:
    """Same kept fraction of every group (groups already below it stay where they are)."""
    keep = lambda q: sum(min(unpruned[g], q * params[g]) for g in params)  # noqa: E731
    q = _solve_monotone(lambda x: -keep(x), -budget, 0.0, 1.0)
    return integerize({g: min(unpruned[g], q * params[g]) for g in params}, budget, unpruned)


def reference(params: dict[str, int], unpruned: dict[str, int], budget: int) -> dict[str, int]:
    """Group g keeps ``params_g * r_g ** c`` (the course recipe's proportions, ``c`` solved)."""
    ref = reference_keep()
    mean_log = sum(math.log(v) for v in ref.values()) / len(ref)
    logs = {g: math.log(ref[g]) if g in ref else mean_log for g in params}  # custom groups: the mean
    keep = lambda c: sum(min(unpruned[g], params[g] * math.exp(c * logs[g])) for g in params)  # noqa: E731
    c = _solve_monotone(keep, budget, 0.0, 1e4)
    return integerize({g: min(unpruned[g], params[g] * math.exp(c * logs[g])) for g in params}, budget, unpruned)


@torch.no_grad()
def global_magnitude(tensors: dict[str, list[torch.Tensor]], budget: int) -> dict[str, int]:
    """Keep the ``budget`` largest |w| among the unpruned weights of all groups (``tensors``: the
    effective weight tensors of each group, pruned entries already zero and excluded)."""
    names, chunks = [], []
    for g, ts in tensors.items():
        for t in ts:
            v = t.detach().abs().flatten().float().cpu()
            chunks.append(v)
            names.append(g)
    allv = torch.cat(chunks)
    nz_total = int((allv != 0).sum())
    if budget > nz_total:
        raise ValueError(f"budget {budget} exceeds the {nz_total} unpruned weights")
    out = {g: 0 for g in tensors}
    if budget == 0:
        return out
    # rank all weights; the top `budget` are kept (ties broken by position, as topk does)
    idx = torch.topk(allv, budget, sorted=False).indices
    owner = torch.cat([torch.full((c.numel(),), i, dtype=torch.int32) for i, c in enumerate(chunks)])
    counts = torch.bincount(owner[idx], minlength=len(chunks))
    for i, g in enumerate(names):
        out[g] += int(counts[i])
    return out


@torch.no_grad()
def measure_sensitivity(groups: dict[str, list[nn.Module]], loss_fn: Callable[[], float],
                        levels=DEFAULT_LEVELS, log: Callable[[str], None] | None = None) -> dict:
    """Validation loss with each group alone pruned (L1, global within the group) to each level.

    ``levels`` are fractions of the group's weights pruned in all. The model is restored after
    every measurement (the pruned weights are zeroed in place in the tensor the group computes
    with -- ``weight_orig`` once torch pruning is attached -- and written back). Returns
    ``{"base": loss, "levels": [...], "curves": {group: [loss at each level]}}``; a level below
    the group's current sparsity reads as the current loss.
    """
    base = float(loss_fn())
    curves: dict[str, list[float]] = {}
    for g, mods in groups.items():
        params = [m._parameters.get("weight_orig", m._parameters.get("weight")) for m in mods]
        masks = [m._buffers.get("weight_mask") for m in mods]
        eff = [p.detach() * (mk if mk is not None else 1) for p, mk in zip(params, masks)]
        allv = torch.cat([e.abs().flatten() for e in eff])
        n = allv.numel()
        already = int((allv == 0).sum())
        order = torch.argsort(allv)  # zeros (already pruned) first
        curve = []
        for s in levels:
            k = int(round(s * n))
            if k <= already:
                curve.append(base)
                continue
            drop = torch.zeros(n, dtype=torch.bool, device=allv.device)
            drop[order[:k]] = True
            saved = [p.detach().clone() for p in params]
            off = 0
            for p in params:
                d = drop[off: off + p.numel()].view_as(p)
                p.data[d] = 0
                off += p.numel()
            try:
                loss = float(loss_fn())
            finally:
                for p, s_ in zip(params, saved):
                    p.data.copy_(s_)
            curve.append(loss)
        curves[g] = curve
        if log:
            log(f"  sensitivity {g:<14} " + " ".join(f"{s:.2f}:{v:.3f}" for s, v in zip(levels, curve)))
    return {"base": base, "levels": [float(x) for x in levels], "curves": curves}


def _lower_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Lower convex hull of points sorted by x (Andrew's monotone chain, lower half)."""
    hull: list[tuple[float, float]] = []
    for p in points:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) <= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def auto(params: dict[str, int], unpruned: dict[str, int], budget: int, sensitivity: dict) -> tuple[dict[str, int], dict]:
    """Least predicted loss allocation from ``measure_sensitivity``'s curves.

    Returns ``(keep counts, details)``; details hold each group's predicted loss increase. A
    group can be pruned up to the highest measured level; if the budget needs more than that,
    ValueError names the levels to add.
    """
    base = sensitivity["base"]
    levels = sensitivity["levels"]
    segments = []  # (slope, group, x0, x1, y0, y1) in (weights pruned beyond now, loss increase)
    max_prune = {}
    for g in params:
        n, u = params[g], unpruned[g]
        now = n - u
        pts = [(0.0, 0.0)]
        worst = 0.0
        for s, loss in zip(levels, sensitivity["curves"][g]):
            x = s * n - now
            if x <= 0:
                continue
            worst = max(worst, loss - base)  # losses do not fall with more pruning
            pts.append((x, worst))
        max_prune[g] = pts[-1][0]
        hull = _lower_hull(pts)
        for (x0, y0), (x1, y1) in zip(hull, hull[1:]):
            segments.append(((y1 - y0) / (x1 - x0), g, x0, x1, y0, y1))
    need = sum(unpruned.values()) - budget
    if need > sum(max_prune.values()) + 1e-6:
        raise ValueError(f"the target needs {need} more weights pruned but the sensitivity levels "
                         f"allow at most {int(sum(max_prune.values()))} (highest level {max(levels)}); "
                         "add higher prune.gradual.sensitivity_levels")
    segments.sort(key=lambda s: (s[0], s[1], s[2]))
    pruned = {g: 0.0 for g in params}
    pred = {g: 0.0 for g in params}
    left = float(need)
    for slope, g, x0, x1, y0, y1 in segments:
        if left <= 0:
            break
        take = min(left, x1 - x0)
        pruned[g] += take
        pred[g] += slope * take
        left -= take
    real = {g: unpruned[g] - pruned[g] for g in params}
    keep = integerize(real, budget, unpruned)
    return keep, {"predicted_loss_increase": pred, "predicted_loss": base + sum(pred.values())}


@dataclass(frozen=True)
class Allocation:
    """A way to split the kept weights among the groups: ``fn(params, unpruned, budget, *, tensors,
    sensitivity) -> (keep per group, details)``; ``tensors()`` gives each group's effective weight
    tensors (called only by an allocation that reads weights); ``needs_sensitivity``: it reads the
    per-group loss curves of :func:`measure_sensitivity` (``sensitivity``), measured before
    planning."""

    fn: Callable[..., tuple[dict[str, int], dict]]
    needs_sensitivity: bool = False


def _auto(params, unpruned, budget, *, tensors, sensitivity):
    if sensitivity is None:
        raise ValueError("allocation='auto' needs sensitivity curves (measure_sensitivity)")
    return auto(params, unpruned, budget, sensitivity)


#: ``prune.gradual.allocation`` -> its :class:`Allocation`; the config check reads the names here.
ALLOCATIONS: dict[str, Allocation] = {
    "uniform": Allocation(lambda params, unpruned, budget, **_: (uniform(params, unpruned, budget), {})),
    "global": Allocation(lambda params, unpruned, budget, *, tensors, **_: (global_magnitude(tensors(), budget), {})),
    "reference": Allocation(lambda params, unpruned, budget, **_: (reference(params, unpruned, budget), {})),
    "auto": Allocation(_auto, needs_sensitivity=True),
}

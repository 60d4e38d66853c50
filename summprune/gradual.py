"""Gradual pruning to a target *honest* ``nonzero_ratio``, exactly.

``plan_gradual`` turns a target ratio into whole numbers: the budget of prunable weights
(``floor(target * dense_params)`` minus what pruning cannot touch: never above the target, so a
course ratio of 0.3 is at most 0.3), each group's final count
(``summprune.allocate``), and each step's count (``summprune.schedules.keep_counts``: every group
follows the same schedule from where it stands to its final count, so the whole model follows it
too). ``prune_to_counts`` applies one step with torch's L1Unstructured given an *integer* amount
(a number of weights, which torch does not round), global within each group as
``summprune.prune.apply_stage`` does, and re-shares the tied embedding's mask.
``run_gradual`` drives the steps: prune, recover (callback), evaluate (callback), log.

The result is exact: after the last step each group keeps its planned count, and the model's
non-zero count is the target unless a kept weight happens to be exactly 0.0.
"""

from __future__ import annotations

import math

import time
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from . import allocate as A
from . import prune as P
from . import sparsity as S
from .modeling import group_modules
from .schedules import keep_counts


def _weight(m: nn.Module) -> torch.Tensor:
    """The tensor a (possibly pruned) module computes with: ``weight_orig * weight_mask``."""
    if "weight_mask" in m._buffers:
        return m.weight_orig.detach() * m.weight_mask
    return m.weight.detach()


def group_counts(model: nn.Module, patterns: dict[str, str] | None = None) -> dict[str, dict[str, int]]:
    """Per group: ``params``, ``unpruned`` (mask ones, or all) and ``nonzero`` (of orig * mask)."""
    out = {}
    for g, mods in group_modules(model, patterns).items():
        params = unpruned = nonzero = 0
        for _, m in mods:
            w = _weight(m)
            params += w.numel()
            unpruned += int(m.weight_mask.sum()) if "weight_mask" in m._buffers else w.numel()
            nonzero += int(torch.count_nonzero(w))
        out[g] = {"params": params, "unpruned": unpruned, "nonzero": nonzero}
    return out


def prunable_budget(model: nn.Module, target: float, patterns: dict[str, str] | None = None) -> dict[str, Any]:
    """How many group weights may stay non-zero for an honest ``nonzero_ratio`` of ``target``.

    ``fixed`` = non-zeros outside the groups (layer norms, relative attention bias, a dense input
    embedding in tie_mode 'course'/'untie'); ``budget = floor(target * dense) - fixed``: the ratio
    reached is never above the target (a course limit of 0.3 is a hard one), and rounding up by one
    weight never happens.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target nonzero_ratio={target}: must be in (0, 1]")
    counts = group_counts(model, patterns)
    dense = S.dense_param_count(model)
    total_nz = S.nonzero_count(model)
    fixed = total_nz - sum(c["nonzero"] for c in counts.values())
    # floor, not round: round(0.3 * 1,069,696) gives a ratio of 0.30000019, above a 0.3 limit.
    # The epsilon keeps an exact product (e.g. 0.5 * 1000) from flooring to one below.
    target_nz = math.floor(target * dense + 1e-6)
    budget = target_nz - fixed
    unpruned = sum(c["unpruned"] for c in counts.values())
    if budget < 0:
        raise ValueError(
            f"target nonzero_ratio={target} is unreachable: the parameters no group prunes (layer norms, "
            f"relative attention bias, and a dense input embedding unless tie_mode='tied') are already "
            f"{fixed / dense:.4f} of the model")
    if budget > unpruned:
        raise ValueError(f"target nonzero_ratio={target} is above what the model has now "
                         f"({total_nz / dense:.4f}); pruning cannot add weights back")
    return {"dense": dense, "fixed": fixed, "target_nonzero": target_nz, "budget": budget, "groups": counts}


def allocate(model: nn.Module, budget: int, counts: dict[str, dict[str, int]], allocation: str,
             patterns: dict[str, str] | None = None, sensitivity: dict | None = None) -> tuple[dict[str, int], dict]:
    """Final kept weights per group for ``allocation`` (see ``summprune.allocate``)."""
    params = {g: c["params"] for g, c in counts.items()}
    unpruned = {g: c["unpruned"] for g, c in counts.items()}
    extra: dict = {}
    if allocation == "uniform":
        keep = A.uniform(params, unpruned, budget)
    elif allocation == "reference":
        keep = A.reference(params, unpruned, budget)
    elif allocation == "global":
        tensors = {g: [_weight(m) for _, m in mods] for g, mods in group_modules(model, patterns).items()}
        keep = A.global_magnitude(tensors, budget)
    elif allocation == "auto":
        if sensitivity is None:
            raise ValueError("allocation='auto' needs sensitivity curves (measure_sensitivity)")
        keep, extra = A.auto(params, unpruned, budget, sensitivity)
    else:
        raise ValueError(f"allocation={allocation!r}: choose one of {list(A.ALLOCATIONS)}")
    return keep, extra


def plan_gradual(model: nn.Module, target: float, *, schedule: str = "cubic", steps: int = 10,
                 allocation: str = "uniform", patterns: dict[str, str] | None = None,
                 sensitivity: dict | None = None) -> dict[str, Any]:
    """Whole-number plan: ``final`` kept weights per group and ``steps`` (list of per-group counts)."""
    b = prunable_budget(model, target, patterns)
    final, extra = allocate(model, b["budget"], b["groups"], allocation, patterns, sensitivity)
    per_group = {g: keep_counts(b["groups"][g]["unpruned"], final[g], schedule, steps) for g in final}
    plan = {
        "target_nonzero_ratio": target, "schedule": schedule, "steps": steps, "allocation": allocation,
        "dense_params": b["dense"], "fixed_params": b["fixed"], "target_nonzero": b["target_nonzero"],
        "groups": {g: {"params": b["groups"][g]["params"], "start": b["groups"][g]["unpruned"],
                       "keep": final[g], "nonzero_ratio": final[g] / b["groups"][g]["params"]} for g in final},
        "step_keep": [{g: per_group[g][t] for g in final} for t in range(steps)],
    }
    if extra:
        for g, v in extra.get("predicted_loss_increase", {}).items():
            plan["groups"][g]["predicted_loss_increase"] = v
        plan["predicted_loss"] = extra.get("predicted_loss")
    return plan


def prune_to_counts(model: nn.Module, keep: dict[str, int], patterns: dict[str, str] | None = None,
                    tie_mode: str = "tied") -> dict[str, int]:
    """Prune each group (L1, global within the group) down to ``keep[g]`` unpruned weights.

    torch's ``amount`` is given as an integer (a number of weights, exactly); returns how many
    each group lost.
    """
    groups = group_modules(model, patterns)
    unknown = sorted(set(keep) - set(groups))
    if unknown:
        raise ValueError(f"unknown group(s) {unknown}; known groups: {sorted(groups)}")
    pruned = {}
    for g, k in keep.items():
        mods = [m for _, m in groups[g]]
        now = sum(int(m.weight_mask.sum()) if "weight_mask" in m._buffers else m.weight.numel() for m in mods)
        n = now - int(k)
        if n < 0:
            raise ValueError(f"group {g}: asked to keep {k} weights but only {now} are unpruned")
        if n > 0:
            # Rank by the weights as they are now (weight_orig * weight_mask). torch's default
            # score is the module's cached ``weight`` attribute, which the pruning hook last set
            # at the previous forward pass: one optimizer step stale after recovery training.
            torch_prune.global_unstructured([(m, "weight") for m in mods],
                                            pruning_method=torch_prune.L1Unstructured,
                                            importance_scores={(m, "weight"): _weight(m) for m in mods},
                                            amount=int(n))
        pruned[g] = n
    if tie_mode == "tied":
        P.sync_tied_masks(model)
    return pruned


def format_plan(plan: dict) -> str:
    """A text table of the allocation (printed by the pipeline and the benchmark)."""
    pred = any("predicted_loss_increase" in r for r in plan["groups"].values())
    lines = [f"allocation '{plan['allocation']}' to honest nonzero_ratio {plan['target_nonzero_ratio']} "
             f"({plan['target_nonzero']:,} of {plan['dense_params']:,}; {plan['fixed_params']:,} not prunable), "
             f"schedule '{plan['schedule']}' x {plan['steps']}",
             f"{'group':<16}{'params':>12}{'keep':>12}{'nonzero_ratio':>15}" + ("  pred. dloss" if pred else "")]
    for g, r in plan["groups"].items():
        line = f"{g:<16}{r['params']:>12,}{r['keep']:>12,}{r['nonzero_ratio']:>15.4f}"
        if pred:
            line += f"  {r.get('predicted_loss_increase', 0.0):>11.4f}"
        lines.append(line)
    return "\n".join(lines)


def run_gradual(model: nn.Module, gcfg, *, tie_mode: str = "tied", patterns: dict[str, str] | None = None,
                recover: Callable[[int, int, float, bool], dict] | None = None,
                evaluate_fn: Callable[[], dict] | None = None,
                log: Callable[[dict], None] | None = None,
                loss_fn: Callable[[], float] | None = None,
                sync: Callable[[Any], Any] | None = None,
                sensitivity: dict | None = None,
                log_print: Callable[[str], None] = print) -> tuple[list[dict], dict]:
    """Prune ``model`` to ``gcfg.target_nonzero_ratio`` in ``gcfg.steps`` steps.

    ``gcfg`` is a ``summprune.config.GradualConfig`` (or anything with its fields).
    ``recover(step, max_steps, epochs, last)`` runs recovery fine-tuning after a step (the last
    step gets its own plus the final recovery budget); ``evaluate_fn`` scores the model every
    ``eval_every`` steps and after the last; ``loss_fn`` (validation loss) is needed for
    ``allocation='auto'``; ``sync(obj)`` returns the main process's copy of ``obj`` (so that all
    DDP processes prune the same weights); ``sensitivity`` (from an earlier ``measure_sensitivity``
    on this model) skips the measurement. Returns ``(records, info)``: one record per step (as
    ``apply_recipe``'s) and the plan for ``pruning.json``.
    """
    P.prepare_model(model, tie_mode)
    t0 = time.time()
    if gcfg.allocation == "auto" and sensitivity is None:
        if loss_fn is None:
            raise ValueError("allocation='auto' needs validation data to measure sensitivities")
        if tie_mode == "course":
            raise ValueError("allocation='auto' needs tie_mode 'tied' or 'untie' (in 'course' the "
                             "lm_head mask and the dense embedding share one tensor)")
        log_print("measuring per-group sensitivity (validation loss, one group pruned at a time)")
        sensitivity = A.measure_sensitivity({g: [m for _, m in mods] for g, mods in group_modules(model, patterns).items()},
                                            loss_fn, gcfg.sensitivity_levels, log=log_print)
        sensitivity["seconds"] = round(time.time() - t0, 1)
    plan = plan_gradual(model, gcfg.target_nonzero_ratio, schedule=gcfg.schedule, steps=gcfg.steps,
                        allocation=gcfg.allocation, patterns=patterns, sensitivity=sensitivity)
    if sync is not None:
        plan = sync(plan)
    if sensitivity is not None:
        plan["sensitivity"] = sensitivity
    log_print(format_plan(plan))
    records = []
    for i, keep in enumerate(plan["step_keep"]):
        t_step = time.time()
        last = i == len(plan["step_keep"]) - 1
        before = {g: c["unpruned"] for g, c in group_counts(model, patterns).items()}
        pruned = prune_to_counts(model, keep, patterns, tie_mode)
        rec: dict[str, Any] = {"event": "stage", "stage": i + 1, "gradual_step": i + 1,
                               "amounts": {g: (pruned[g] / before[g] if before[g] else 0.0) for g in pruned},
                               "pruned": pruned, "keep": dict(keep)}
        steps = gcfg.recover_steps + (gcfg.final_recover_steps if last else 0)
        epochs = gcfg.recover_epochs + (gcfg.final_recover_epochs if last else 0.0)
        if recover is not None and (steps > 0 or epochs > 0):
            rec["recovery"] = recover(i + 1, steps, epochs, last)
        rec.update({k: v for k, v in S.report(model, patterns).items()})
        if evaluate_fn is not None and (last or (gcfg.eval_every > 0 and (i + 1) % gcfg.eval_every == 0)):
            rec.update(evaluate_fn())
        rec["stage_s"] = round(time.time() - t_step, 2)
        records.append(rec)
        if log:
            log(rec)
    return records, plan

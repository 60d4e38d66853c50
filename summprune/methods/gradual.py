"""Gradual pruning to a target *honest* ``nonzero_ratio``, exactly.

``plan_gradual`` turns a target ratio into whole numbers: the budget of prunable weights
(``floor(target * dense_params)`` minus what pruning cannot touch: never above the target, so a
course ratio of 0.3 is at most 0.3), each group's final count
(``summprune.allocate``), and each step's count (``summprune.schedules.keep_counts``: every group
follows the same schedule from where it stands to its final count, so the whole model follows it
too). Each step is cut by ``summprune.prune.prune_to_counts``, the cut the stages use too.
:class:`Gradual` is the method (``[prune.gradual]``) the driver (``summprune.pipeline.prune_model``)
runs: plan on the main process, then per step prune, recover, evaluate, log.

The result is exact: after the last step each group keeps its planned count, and the model's
non-zero count is the target unless a kept weight happens to be exactly 0.0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import allocate as A
from .. import prune as P
from .. import sparsity as S
from ..config import PruneConfig, RecoveryConfig, _help
from ..modeling import group_modules
from ..schedules import SCHEDULES, keep_counts
from ..ties import TIE_MODES, TieMode
from .base import Criterion, Method, Step, criterion, criterion_batches, register


@dataclass
class GradualConfig(RecoveryConfig):
    target_nonzero_ratio: float = _help(
        "Honest nonzero_ratio to reach (non-zeros the model computes with / dense parameters, the "
        "tied embedding counted once), never exceeded; required, in (0, 1).",
        default=0.0,
    )
    schedule: str = _help(
        "Cumulative sparsity per step: 'cubic' (Zhu & Gupta 2017), 'linear', 'geometric' (the same "
        "fraction of the remaining weights each step, like the course recipe) or 'constant' (all at "
        "the first step, then recovery only).",
        default="cubic",
    )
    steps: int = _help("Pruning steps (each followed by recovery).", default=10)
    final_recover_steps: int = _help(
        "Extra recovery steps after the last pruning step (added to its recover_steps).", default=0)
    final_recover_epochs: float = _help("Extra recovery epochs after the last pruning step.", default=0.0)
    allocation: str = _help(
        "Per-group sparsity: 'uniform' (same fraction of every group), 'global' (one L1 threshold "
        "over all prunable weights), 'reference' (the course recipe's group proportions scaled to the "
        "target) or 'auto' (measured per-group sensitivity, least predicted loss).",
        default="uniform",
    )
    sensitivity_levels: list[float] = _help(
        "allocation='auto': group sparsities at which each group's validation loss is measured; "
        "the highest is the most a group can be pruned.",
        default_factory=lambda: [0.5, 0.7, 0.8, 0.9, 0.95, 0.98],
    )
    sensitivity_docs: int = _help("allocation='auto': validation documents for the loss.", default=64)
    eval_every: int = _help("Generate and score every N steps (0 = after the last step only).", default=0)
    importance: str = _help(
        "Which weights a step cuts within a group: 'magnitude' (|w|, L1), 'wanda' (|w| times the "
        "L2 norm of its input feature over calibration batches, Sun et al. 2023) or 'obs' (second "
        "order, SparseGPT-style: saliency w^2/[H^-1]_jj^2 from the layer's input Hessian, and the "
        "remaining weights updated to compensate; uniform within a group), measured again at "
        "every step.", default="magnitude")
    importance_batches: int = _help("importance='wanda' or 'obs': training batches measured per step.",
                                    default=16)


def validate_gradual(gr: GradualConfig, pr: PruneConfig, bad) -> None:
    """Beyond the types; the choices are this module's registries (CRITERIA, allocate.A.ALLOCATIONS)."""
    if pr.stages:
        bad(" and prune.stages are alternatives (a target ratio, or explicit stages): remove one")
    if not 0.0 < gr.target_nonzero_ratio < 1.0:
        bad(f".target_nonzero_ratio={gr.target_nonzero_ratio}: set the honest nonzero_ratio to reach, in (0, 1)")
    if gr.schedule not in SCHEDULES:
        bad(f".schedule={gr.schedule!r}: choose one of {list(SCHEDULES)}")
    if gr.steps < 1:
        bad(f".steps={gr.steps}: must be >= 1")
    if min(gr.final_recover_steps, gr.final_recover_epochs) < 0:
        bad(": final recovery steps/epochs must be >= 0")
    if gr.allocation not in A.ALLOCATIONS:
        bad(f".allocation={gr.allocation!r}: choose one of {list(A.ALLOCATIONS)}")
    lv = gr.sensitivity_levels
    if not lv or any(not 0.0 < x < 1.0 for x in lv) or any(b <= a for a, b in zip(lv, lv[1:])):
        bad(f".sensitivity_levels={lv}: need increasing sparsities in (0, 1)")
    if gr.sensitivity_docs < 1:
        bad(f".sensitivity_docs={gr.sensitivity_docs}: must be >= 1")
    if (gr.allocation in A.ALLOCATIONS and A.ALLOCATIONS[gr.allocation].needs_sensitivity
            and pr.tie_mode in TIE_MODES and TieMode.of(pr.tie_mode).masks_head_only):
        bad(f".allocation={gr.allocation!r} needs prune.tie_mode 'tied' or 'untie'")
    if gr.eval_every < 0:
        bad(f".eval_every={gr.eval_every}: must be >= 0")
    if gr.importance not in CRITERIA:
        bad(f".importance={gr.importance!r}: choose one of {list(CRITERIA)}")
    if gr.importance_batches < 1:
        bad(f".importance_batches={gr.importance_batches}: must be >= 1")


_weight = P.current_weight


def group_counts(model: nn.Module, patterns: dict[str, str] | None = None) -> dict[str, dict[str, int]]:
    """Per group: ``params``, ``unpruned`` (mask ones, or all) and ``nonzero`` (of orig * mask)."""
    out = {}
    for g, mods in group_modules(model, patterns).items():
        params = unpruned = nonzero = 0
        for _, m in mods:
            w = _weight(m)
            params += w.numel()
            unpruned += P.unpruned_count(m)
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
    if allocation not in A.ALLOCATIONS:
        raise ValueError(f"allocation={allocation!r}: choose one of {list(A.ALLOCATIONS)}")

    def tensors() -> dict[str, list[torch.Tensor]]:  # read only by an allocation that ranks weights
        return {g: [_weight(m) for _, m in mods] for g, mods in group_modules(model, patterns).items()}

    return A.ALLOCATIONS[allocation].fn(params, unpruned, budget, tensors=tensors, sensitivity=sensitivity)


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


prune_to_counts = P.prune_to_counts  # the one cut, shared with the stages (summprune.prune)


#: ``prune.gradual.importance`` -> its criterion (:class:`~summprune.methods.base.Criterion`:
#: ``fn(model, batches, keep=, patterns=, tie_mode=, progress=, log=)`` prunes each group to
#: ``keep[g]`` unpruned weights and returns how many each group lost); the config check reads the
#: names from here. A new criterion is one function with ``@criterion(CRITERIA, "name")``.
CRITERIA: dict[str, Criterion] = {}


@criterion(CRITERIA, "magnitude")
def _magnitude(model, batches, *, keep, patterns, tie_mode, progress=True, log=None):
    return P.prune_to_counts(model, keep, patterns, tie_mode)


@criterion(CRITERIA, "wanda", needs_data=True)
def _wanda(model, batches, *, keep, patterns, tie_mode, progress=True, log=None):
    """|W| times the L2 norm of its input feature over ``batches`` (Sun et al. 2023)."""
    mods = [m for grp in keep for _, m in group_modules(model, patterns)[grp]]
    return P.prune_to_counts(model, keep, patterns, tie_mode, scores=P.wanda_scores(model, mods, batches, progress=progress))


@criterion(CRITERIA, "obs", needs_data=True)
def _obs(model, batches, *, keep, patterns, tie_mode, progress=True, log=None):
    """The Optimal Brain Surgeon step as SparseGPT computes it (mask and weight update)."""
    return P.obs_step(model, keep, patterns, tie_mode, batches, progress=progress, log=log)


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


@register
class Gradual(Method):
    """``[prune.gradual]``: prune to an exact honest ``nonzero_ratio`` in ``steps`` steps of a
    cumulative schedule, with recovery after every step (the last one gets the final budget too)."""

    name = "gradual"
    config_cls = GradualConfig
    validate = staticmethod(validate_gradual)

    def prepare(self, model: nn.Module) -> None:
        P.prepare_model(model, self.tie_mode)

    def distills(self) -> bool:
        g = self.config  # the last step's final budget counts: it may be the only recovery
        return g.distils() and (g.recovers() or g.final_recover_steps > 0 or g.final_recover_epochs > 0)

    def plan(self, model: nn.Module, ctx) -> dict:
        g = self.config
        sensitivity = None
        measured = A.ALLOCATIONS[g.allocation].needs_sensitivity
        if measured:
            if TieMode.of(self.tie_mode).masks_head_only:
                raise ValueError(f"allocation={g.allocation!r} needs tie_mode 'tied' or 'untie' (in 'course' the "
                                 "lm_head mask and the dense embedding share one tensor)")
            sensitivity = ctx.cache.get("sensitivity")
        if measured and sensitivity is None:
            if ctx.val_ds is None:
                raise ValueError(f"prune.gradual.allocation={g.allocation!r} measures validation loss: it needs data "
                                 "(not available with --no-train)")
            t0 = time.time()
            ctx.log_print("measuring per-group sensitivity (validation loss, one group pruned at a time)")
            loss_fn = ctx.loss_fn(model, g.sensitivity_docs)
            sensitivity = A.measure_sensitivity(
                {grp: [m for _, m in mods] for grp, mods in group_modules(model, self.patterns).items()},
                loss_fn, g.sensitivity_levels, log=ctx.log_print)
            sensitivity["seconds"] = round(time.time() - t0, 1)
            ctx.cache["sensitivity"] = sensitivity
        plan = plan_gradual(model, g.target_nonzero_ratio, schedule=g.schedule, steps=g.steps,
                            allocation=g.allocation, patterns=self.patterns, sensitivity=sensitivity)
        if sensitivity is not None:
            plan["sensitivity"] = sensitivity
        ctx.log_print(format_plan(plan))
        return plan

    def steps(self, plan: dict) -> list[Step]:
        g = self.config
        out = []
        n = len(plan["step_keep"])
        for i, keep in enumerate(plan["step_keep"]):
            last = i == n - 1
            rc = RecoveryConfig(**{**vars(g.recovery()),
                                   "recover_steps": g.recover_steps + (g.final_recover_steps if last else 0),
                                   "recover_epochs": g.recover_epochs + (g.final_recover_epochs if last else 0.0)})
            evaluate = last or (g.eval_every > 0 and (i + 1) % g.eval_every == 0)
            out.append(Step(i + 1, keep, rc if rc.recovers() else None, evaluate))
        return out

    def apply(self, model: nn.Module, step: Step, ctx) -> tuple[nn.Module, dict]:
        before = {grp: c["unpruned"] for grp, c in group_counts(model, self.patterns).items()}
        imp = self.config.importance
        crit = CRITERIA[imp]
        batches = criterion_batches(crit, f"prune.gradual.importance={imp!r}", model, ctx,
                                    self.config.importance_batches, "importance='magnitude'")
        # the switch that quiets the Trainer's bars quiets these too
        pruned = crit.fn(model, batches, keep=step.payload, patterns=self.patterns, tie_mode=self.tie_mode,
                         progress=ctx.train_cfg.progress_bar, log=ctx.log_print)
        return model, {"gradual_step": step.index, "pruned": pruned, "keep": dict(step.payload),
                       "amounts": {grp: (pruned[grp] / before[grp] if before[grp] else 0.0) for grp in pruned}}

    def record(self, plan: dict) -> dict:
        return plan

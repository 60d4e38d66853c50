"""``[[prune.stages]]``: the course's staged global L1 pruning, as one schedule of exact counts.

Each stage names, per layer group, the fraction of the weights *still unpruned* to remove
(``torch.nn.utils.prune``'s ``amount``); ``repeat`` applies a stage several times. The plan turns
the stages into whole numbers of weights each group keeps after each stage
(``summprune.schedules.amount_counts``: ``round(amount * unpruned)`` pruned per stage, exactly what
torch's float ``amount`` prunes), and each step is cut by ``summprune.prune.prune_to_counts``, the
cut gradual pruning uses. ``configs/seed.toml`` therefore still gives 0.7729, 0.6056, 0.4812,
0.3877, 0.3167, 0.2989.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from .. import prune as P
from ..config import GROUPS, PruneConfig, RecoveryConfig, _help
from ..schedules import amount_counts
from .base import Method, Step, register


@dataclass
class StageConfig(RecoveryConfig):
    amounts: dict[str, float] = _help(
        "Per-group fraction of the weights *still unpruned* to prune in this stage "
        "(torch.nn.utils.prune semantics). Groups not named are left alone.",
        default_factory=dict,
    )
    repeat: int = _help("Apply this stage N times in a row (the course's five equal stages).", default=1)


def expand_stages(stages: list[StageConfig]) -> list[StageConfig]:
    """Unroll ``repeat`` so that each entry is one applied stage."""
    out: list[StageConfig] = []
    for st in stages:
        for _ in range(st.repeat):
            out.append(dataclasses.replace(st, repeat=1))
    return out


def validate_stage(st: StageConfig, pr: PruneConfig, bad) -> None:
    """Beyond the types: known groups, amounts in [0, 1), repeat >= 1."""
    groups = set(GROUPS) | set(pr.groups)
    for g, a in st.amounts.items():
        if g not in groups:
            bad(f".amounts: unknown group {g!r}; known groups: {sorted(groups)}")
        if not 0.0 <= a < 1.0:
            bad(f".amounts.{g}={a}: an amount is a fraction of the weights still unpruned and must be in [0, 1)")
    if st.repeat < 1:
        bad(f".repeat={st.repeat}: must be >= 1")



@register
class Stages(Method):
    name = "stages"
    config_cls = StageConfig
    many = True
    validate = staticmethod(validate_stage)

    def prepare(self, model: nn.Module) -> None:
        P.prepare_model(model, self.tie_mode)

    def plan(self, model: nn.Module, ctx) -> list[dict]:
        stages = expand_stages(self.config)
        named = sorted({g for st in stages for g in st.amounts})
        groups = P.named_groups(model, self.patterns, named)
        counts = {g: amount_counts(sum(P.unpruned_count(m) for _, m in groups[g]),
                                   [st.amounts.get(g, 0.0) for st in stages]) for g in named}
        return [{"amounts": dict(st.amounts), "keep": {g: counts[g][t] for g in st.amounts}}
                for t, st in enumerate(stages)]

    def steps(self, plan: list[dict]) -> list[Step]:
        stages = expand_stages(self.config)
        return [Step(t + 1, p, st.recovery() if st.recovers() else None, True)
                for t, (p, st) in enumerate(zip(plan, stages))]

    def apply(self, model: nn.Module, step: Step, ctx) -> tuple[nn.Module, dict]:
        P.prune_to_counts(model, step.payload["keep"], self.patterns, self.tie_mode)
        return model, {"amounts": step.payload["amounts"]}

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

from torch import nn

from .. import prune as P
from ..config import StageConfig, expand_stages
from ..schedules import amount_counts
from .base import Method, Step, register


@register
class Stages(Method):
    name = "stages"
    config_cls = StageConfig
    many = True

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

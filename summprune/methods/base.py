"""The method interface and the registry: how a pruning method plugs into the one driver.

A method is one module holding a :class:`Method` subclass that declares its config section (a
dataclass, usually a :class:`~summprune.config.RecoveryConfig` subclass so it gets the shared
recovery keys) and implements four small steps; ``@register`` makes ``[prune.<name>]`` a known
table and the driver (``summprune.pipeline.prune_model``) runs it, with no edit to the driver:

``prepare(model)``      every process, before planning (e.g. untie lm_head for ``tie_mode='untie'``);
``plan(model, ctx)``    the main process only: what to cut, as picklable data (whole counts, a
                        structure plan); the driver broadcasts it so every process cuts the same;
``steps(plan)``         the plan as :class:`Step` s, each with the recovery to run after it and
                        whether to evaluate then;
``apply(model, step, ctx)``  cut one step; returns the model (a new one if the shape changed) and
                        what to log for that step.
``record(plan)``        what ``pruning.json`` keeps under the method's name (None: nothing).

Structural methods (``structural = True``: they change shapes) run before masking ones; otherwise
methods run in the order of their sections in the config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from torch import nn

from ..config import SECTIONS, PruneConfig, RecoveryConfig, register_section


@dataclass
class Step:
    """One pruning step of a plan."""

    index: int  # 1-based within its method
    payload: Any  # what apply() cuts (part of the plan)
    recovery: RecoveryConfig | None  # run after apply (None: no recovery)
    evaluate: bool = True  # generate and score after the step (and its recovery)


@dataclass
class Context:
    """What methods may use besides the model: data, settings, and the run's log."""

    tokenizer: Any = None
    train_ds: Any = None  # tokenized training split, None without data (--no-train)
    val_ds: Any = None  # tokenized validation split, or None
    train_cfg: Any = None  # summprune.config.TrainConfig
    log_print: Callable[[str], None] = print
    #: measurements a method may reuse instead of repeating them (e.g. "sensitivity": the dense
    #: model's per-group curves, which a benchmark measures once for every cell)
    cache: dict = field(default_factory=dict)

    def loss_fn(self, model: nn.Module, docs: int) -> Callable[[], float]:
        """Validation loss of ``model`` on the first ``docs`` validation documents, as a function."""
        from ..train import validation_loss

        sub = self.val_ds.select(range(min(docs, len(self.val_ds))))
        return lambda: validation_loss(model, self.tokenizer, sub, batch_size=self.train_cfg.eval_batch_size)


class Method:
    """Base class: a pruning method with its config section (see the module docstring)."""

    name: ClassVar[str]
    config_cls: ClassVar[type]
    many: ClassVar[bool] = False  # the section is a list of tables ([[prune.<name>]])
    structural: ClassVar[bool] = False  # changes the architecture: runs before masking methods

    def __init__(self, config: Any, prune_cfg: PruneConfig):
        self.config = config
        self.tie_mode = prune_cfg.tie_mode
        self.patterns = prune_cfg.groups

    @staticmethod
    def validate(config: Any, prune_cfg: PruneConfig, bad: Callable[[str], None]) -> None:
        """Check the section beyond its types (``bad(".key=value: why")``); no torch needed."""

    def distills(self) -> bool:
        items = self.config if isinstance(self.config, list) else [self.config]
        return any(isinstance(c, RecoveryConfig) and c.needs_teacher() for c in items)

    def prepare(self, model: nn.Module) -> None:
        pass

    def plan(self, model: nn.Module, ctx: Context) -> Any:
        raise NotImplementedError

    def steps(self, plan: Any) -> list[Step]:
        raise NotImplementedError

    def apply(self, model: nn.Module, step: Step, ctx: Context) -> tuple[nn.Module, dict]:
        raise NotImplementedError

    def record(self, plan: Any) -> dict | None:
        return None


#: name -> Method subclass; the name is also its config section's.
REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` the method of section ``[prune.<cls.name>]``."""
    sec = SECTIONS.get(cls.name)
    if sec is None:
        validate = cls.validate if cls.validate is not Method.validate else None
        register_section(cls.name, cls.config_cls, many=cls.many, validate=validate)
    elif sec.cls is not cls.config_cls or sec.many != cls.many:
        raise ValueError(f"section [prune.{cls.name}] is already registered with {sec.cls.__name__}")
    REGISTRY[cls.name] = cls
    return cls


def build_methods(prune_cfg: PruneConfig) -> list[Method]:
    """The config's methods, ready to run: structural first, then in file order."""
    missing = [k for k in prune_cfg.methods if k not in REGISTRY]
    if missing:
        raise ValueError(f"no method registered for section(s) {missing}")
    methods = [REGISTRY[k](v, prune_cfg) for k, v in prune_cfg.methods.items()]
    return [m for m in methods if m.structural] + [m for m in methods if not m.structural]

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

A method that ranks weights by importance keeps its criteria in a registry of :class:`Criterion`
(``prune.<method>.importance`` names one; the config check reads the names from the registry): one
contract for every method's importances, registered with :func:`criterion`, their training batches
taken by :func:`criterion_batches`.
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


@dataclass(frozen=True)
class Criterion:
    """An importance criterion, the one contract of every method's importances:
    ``fn(model, batches, **what_the_method_passes)``, ``batches`` the training batches it measures
    on (:func:`criterion_batches`; None where ``needs_data`` is False). What it returns is its
    method's: gradual's criteria cut each group to its count and return what each group lost
    (``keep=, patterns=, tie_mode=, progress=, log=``); structured's return a score per neuron
    and head (``module name -> tensor``)."""

    fn: Callable[..., Any]
    needs_data: bool = False


def criterion(registry: dict[str, Criterion], name: str, needs_data: bool = False):
    """Decorator: register ``fn`` as the criterion ``name`` of ``registry`` (a method's own)."""
    def deco(fn):
        registry[name] = Criterion(fn, needs_data)
        return fn
    return deco


def importance_batches(model, tokenizer, dataset, n_batches: int, batch_size: int) -> list[dict]:
    """The first ``n_batches`` batches of a tokenized dataset (input_ids, attention_mask, labels),
    in order, so that every process of a multi-process run measures the same importance."""
    from transformers import DataCollatorForSeq2Seq

    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    keys = ("input_ids", "attention_mask", "labels")
    out = []
    for i in range(0, min(len(dataset), n_batches * batch_size), batch_size):
        rows = [dataset[j] for j in range(i, min(i + batch_size, len(dataset)))]
        out.append(collator([{k: r[k] for k in keys} for r in rows]))
    return out


def criterion_batches(crit: Criterion, option: str, model: nn.Module, ctx: "Context", n_batches: int,
                      instead: str) -> list[dict] | None:
    """The training batches ``crit`` measures on (None where it needs none): the first
    ``n_batches`` of the run's training split. ValueError naming ``option`` (``prune.gradual.
    importance='wanda'``) and the data-free choice ``instead`` where the run has no training data
    (``--no-train``)."""
    if not crit.needs_data:
        return None
    if ctx.train_ds is None:
        raise ValueError(f"{option} measures on training data: it needs training data (not available with "
                         f"--no-train); use {instead}")
    return importance_batches(model, ctx.tokenizer, ctx.train_ds, n_batches, ctx.train_cfg.batch_size)


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

"""Pruning methods behind one interface (:mod:`summprune.methods.base`): importing this package
registers the built-ins, ``stages``, ``gradual`` and ``structured``. A new method is one module
with a ``@register``-ed :class:`~summprune.methods.base.Method` subclass, imported before its
config is loaded."""

from ..config import register_moved
from . import gradual, stages, structured  # registers the built-in methods
from .base import REGISTRY, Context, Method, Step, build_methods, register

# the names summprune.config held before each section moved beside its method (issue 23)
register_moved(stages.StageConfig, stages.expand_stages, gradual.GradualConfig, structured.StructuredConfig,
               names={"LAYER_SELECTIONS": structured.LAYER_SELECTIONS})

__all__ = ["REGISTRY", "Context", "Method", "Step", "build_methods", "register"]

"""Pruning methods behind one interface (:mod:`summprune.methods.base`): importing this package
registers the built-ins, ``stages``, ``gradual`` and ``structured``. A new method is one module
with a ``@register``-ed :class:`~summprune.methods.base.Method` subclass, imported before its
config is loaded."""

from . import gradual, stages, structured  # noqa: F401  (registers the built-in methods)
from .base import REGISTRY, Context, Method, Step, build_methods, register

__all__ = ["REGISTRY", "Context", "Method", "Step", "build_methods", "register"]

"""summprune: fine-tune, prune in stages, export and score a T5 summarizer, with honest numbers.

The public entry points most users need::

    from summprune import load_model, load_config
    model = load_model("pruned_model")      # hf, compact or course format, pruning permanent
"""

from . import config as _config
from .io import formats as _formats
from .config import ExperimentConfig, load_config

__version__ = "0.1.0"


# The registries low modules read are filled by the modules above them that own the entries; this
# module, the top, adds the loaders of the built-ins, run at a registry's first read (see
# summprune.registry and docs/architecture.md, "Layers"): no low module imports upward, and
# importing one (summprune.config) imports no torch.
def _builtin_methods() -> None:
    from . import methods  # noqa: F401  (registers stages, gradual, structured and their sections)


def _builtin_formats() -> None:
    from . import export  # noqa: F401  (registers hf, compact and course)


_config.SECTIONS.add_loader(_builtin_methods)
_config.MOVED.add_loader(_builtin_methods)
_formats.FORMATS.add_loader(_builtin_formats)


def load_model(path, device=None):
    """Load a model directory in either format (see :mod:`summprune.export`)."""
    from .export import load_model as _load

    return _load(path, device=device)


def export_model(model_dir_or_model, out_dir, format="compact", dtype="fp32", **kw):
    """Export a model (object or directory) as 'compact', 'hf' or 'course' (see :mod:`summprune.export`)."""
    from .export import export_model as _export

    return _export(model_dir_or_model, out_dir, format=format, dtype=dtype, **kw)


__all__ = ["ExperimentConfig", "load_config", "load_model", "export_model", "__version__"]

"""summprune: fine-tune, prune in stages, export and score a T5 summarizer, with honest numbers.

The public entry points most users need::

    from summprune import load_model, load_config
    model = load_model("pruned_model")      # hf, compact or course format, pruning permanent
"""

from .config import ExperimentConfig, load_config

__version__ = "0.1.0"


def load_model(path, device=None):
    """Load a model directory in either format (see :mod:`summprune.export`)."""
    from .export import load_model as _load

    return _load(path, device=device)


def export_model(model_dir_or_model, out_dir, format="compact", dtype="fp32", **kw):
    """Export a model (object or directory) as 'compact', 'hf' or 'course' (see :mod:`summprune.export`)."""
    from .export import export_model as _export

    return _export(model_dir_or_model, out_dir, format=format, dtype=dtype, **kw)


__all__ = ["ExperimentConfig", "load_config", "load_model", "export_model", "__version__"]

"""summprune: fine-tune, prune in stages, export and score a T5 summarizer, with honest numbers.

The public entry points most users need::

    from summprune import load_model, load_config
    model = load_model("pruned_model")      # hf or compact format, pruning permanent
"""

from .config import ExperimentConfig, load_config

__version__ = "0.1.0"


def load_model(path, device=None):
    """Load a model directory in either format (see :mod:`summprune.export`)."""
    from .export import load_model as _load

    return _load(path, device=device)


__all__ = ["ExperimentConfig", "load_config", "load_model", "__version__"]

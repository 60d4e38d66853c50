"""Models, tokenizers and the layer groups that pruning targets.

Pruning targets are described as module-name patterns (llm-compressor style), so the same recipe
applies to t5-small, the tiny test model and any model of another depth; each architecture family
(``summprune.models``) gives its own patterns for the six group names.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

from .models import family_of


def group_patterns(overrides: dict[str, str] | None = None, model: nn.Module | None = None) -> dict[str, str]:
    """The layer groups: ``model``'s family's patterns (without a model, those of the family a config
    naming no model_type is: T5's), ``overrides`` on top."""
    pats = dict(family_of(model if model is not None else {}).group_patterns)
    pats.update(overrides or {})
    return pats


def group_modules(model: nn.Module, patterns: dict[str, str] | None = None) -> dict[str, list[tuple[str, nn.Linear]]]:
    """Map each group to its ``(name, nn.Linear)`` modules, in model order.

    Raises ValueError if a module would fall in two groups or a group matches nothing, because
    either means the recipe does not prune what it says.
    """
    pats = group_patterns(patterns, model)
    compiled = {g: re.compile(p) for g, p in pats.items()}
    out: dict[str, list[tuple[str, nn.Linear]]] = {g: [] for g in compiled}
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        hits = [g for g, rx in compiled.items() if rx.search(name)]
        if len(hits) > 1:
            raise ValueError(f"module {name!r} matches several groups: {hits}")
        if hits:
            out[hits[0]].append((name, mod))
    empty = [g for g, mods in out.items() if not mods]
    if empty:
        raise ValueError(f"group(s) {empty} match no nn.Linear module in this model; patterns: "
                         + ", ".join(f"{g}={pats[g]!r}" for g in empty))
    return out


def tiny_config(vocab_size: int, d_model: int = 64, layers: int = 2, heads: int = 4, d_ff: int = 128,
                family: str = "t5", **kw):
    """A small model of ``family``'s layout (T5: t5-small's, ReLU FFN, tied embedding)."""
    return family_of(family).tiny_config(vocab_size, d_model, layers, heads, d_ff, **kw)


def build_tiny_model(vocab_size: int, d_model: int = 64, layers: int = 2, heads: int = 4,
                     d_ff: int = 128, seed: int = 0, family: str = "t5", **kw) -> nn.Module:
    torch.manual_seed(seed)
    fam = family_of(family)
    return fam.build(fam.tiny_config(vocab_size, d_model, layers, heads, d_ff, **kw))


def random_model_from_config(config_dir: str | Path, seed: int = 0) -> nn.Module:
    """A randomly initialised model of the shape in ``config_dir/config.json`` (no weights needed),
    of whichever supported family it describes."""
    fam = family_of(config_dir)
    torch.manual_seed(seed)
    return fam.build(AutoConfig.from_pretrained(str(config_dir)))


def load_tokenizer(name_or_dir: str | Path):
    """Tokenizer by hub name or local directory; a missing directory is a clear error."""
    name = str(name_or_dir)
    if _looks_like_path(name) and not Path(name).is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {name}")
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:  # tokenizers raises plain Exception for a corrupt tokenizer.json
        if not Path(name).is_dir():
            if isinstance(e, OSError):
                raise OSError(_hub_hint("tokenizer", name, e)) from None
            raise
        # an OSError stays one (callers catch it as "cannot read"); a parse error becomes ValueError
        kind = OSError if isinstance(e, OSError) else ValueError
        raise kind(_corrupt_file_hint(Path(name), e, "the tokenizer")) from None


#: The JSON files AutoTokenizer reads from a directory (config.json for the model type).
_TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "config.json")


def _corrupt_file_hint(d: Path, e: Exception, what: str) -> str:
    """Name the JSON file of ``d`` that does not parse (truncated, say); else ``d`` and the error."""
    import json

    for f in _TOKENIZER_JSON:
        p = d / f
        if p.is_file():
            try:
                json.loads(p.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as bad:
                return f"{p}: not valid JSON ({bad}); the file is truncated or corrupt"
    return f"{d}: cannot load {what} ({type(e).__name__}: {e})"


def _hub_hint(what: str, name: str, e: Exception) -> str:
    msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return (f"{name!r}: cannot load the {what} from the Hugging Face hub ({msg}); offline, pass a local "
            f"model directory (a save_pretrained folder with config.json and the tokenizer files), e.g. "
            f"model.name=/data/t5-small")


def load_pretrained(name_or_dir: str | Path) -> nn.Module:
    """A seq2seq model by hub name or a ``save_pretrained`` directory (see export.load_model for
    the compact format too)."""
    name = str(name_or_dir)
    if _looks_like_path(name):
        p = Path(name)
        if not p.is_dir():
            raise FileNotFoundError(f"model directory not found: {name}")
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{name}: no config.json; is this a model directory?")
        # an unsupported model_type: one error listing the supported ones; the family loads it
        # (transformers' loader, or the family's own where transformers cannot build the config)
        return family_of(p).from_pretrained(name)
    try:
        family_of(AutoConfig.from_pretrained(name))
        return AutoModelForSeq2SeqLM.from_pretrained(name)
    except OSError as e:  # offline, or no such repository: the way out is a local directory
        raise OSError(_hub_hint("model", name, e)) from None


def _looks_like_path(name: str) -> bool:
    # Hub ids are "t5-small" or "org/name"; anything that exists locally, starts with . / ~,
    # or has more than one slash is a path, so a typo gives "not found" rather than a hub error.
    return Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") > 1


def tied_parameter_modules(model: nn.Module, param: nn.Parameter) -> list[tuple[str, nn.Module]]:
    """Every module whose ``weight`` (or ``weight_orig`` once pruned) is ``param``."""
    out = []
    for name, mod in model.named_modules():
        w = mod._parameters.get("weight_orig", mod._parameters.get("weight"))
        if w is param:
            out.append((name, mod))
    return out

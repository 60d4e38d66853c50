"""The family registry and what a family declares (:class:`Family`, :class:`Structure`): the base
of the family layer, imported by each family module (``from .base import Family, ...``) and by
``summprune.models``, which imports the families. Read it through :mod:`summprune.models`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn


@dataclass(frozen=True)
class Structure:
    """Where structured pruning finds a family's pieces, as attribute paths (dots) from the model
    and from one block, and which config keys hold their sizes."""

    #: stack -> path of its block list (``encoder.block`` / ``model.encoder.layers``)
    blocks: dict[str, str]
    #: stack -> path of the FFN within a block ("" where the block holds the linears itself)
    ffn: dict[str, str]
    #: the FFN's input linears (rows = neurons; their biases too) and output linear (columns)
    ffn_in: tuple[str, ...]
    ffn_out: str
    #: stack -> the config key of its FFN width
    ffn_dim: dict[str, str]
    #: stack -> the config key of its number of blocks
    layers: dict[str, str]
    #: heads can be cut (T5: ``d_kv`` is its own key); None where the head size is
    #: ``d_model / heads`` (BART, Pegasus), so heads stay
    heads: bool = False
    #: stack -> the config key of its number of attention heads
    heads_key: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    """What the package needs to know of one architecture family."""

    name: str
    #: ``config.model_type`` values this family handles
    model_types: tuple[str, ...]
    #: group -> regex on ``model.named_modules()`` names (only ``nn.Linear`` modules count)
    group_patterns: dict[str, str]
    #: config.json keys that are sizes, with the largest value a loader accepts (checked before
    #: any model is built: a corrupt or hostile config is refused by name)
    config_limits: dict[str, int]
    #: the input prefix a model of this family was trained with by convention ("" for none)
    default_prefix: str
    #: ``config -> bool``: the output projection is the input embedding in the model as
    #: published (a copy of its own is then not part of the dense model)
    native_tied: Callable[[Any], bool]
    #: ``config -> int | None``: the longest input the encoder can read (learned or sinusoidal
    #: positions), None where positions are relative (any length)
    max_source_positions: Callable[[Any], int | None]
    #: ``config -> int | None``: the longest decoder sequence (start token included) the decoder's
    #: positions cover, None where positions are relative (any length)
    max_target_positions: Callable[[Any], int | None]
    #: ``config -> (decoder layers, key/value width of one attention, hidden width)``: what
    #: generation caches per decoder row and position (its memory estimate)
    decoder_dims: Callable[[Any], tuple[int, int, int]]
    #: ``(vocab_size, d_model, layers, heads, d_ff, pad_id, eos_id) -> config`` of a small model of
    #: the family's layout (tests, the smoke run)
    tiny_config: Callable[..., Any]
    #: regexes of state-dict names that int8 keeps in float (non-weight tensors are never quantized)
    int8_exempt: tuple[str, ...] = ()
    #: where structured pruning finds blocks, FFNs (and heads): None = not supported
    structure: Structure | None = None
    #: ``model -> None``: fix-ups of the loaded model (a copy) before CTranslate2 converts it
    #: (config keys its converter reads that transformers 5 no longer sets, ...)
    ct2_prepare: Callable[[nn.Module], None] = field(default=lambda model: None)
    #: ``model -> None``: fix-ups after loading (e.g. a frozen positional table made trainable)
    after_load: Callable[[nn.Module], None] = field(default=lambda model: None)

    def build(self, config) -> nn.Module:
        """A randomly initialised model of ``config`` (under ``torch.device('meta')``: shapes only)."""
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM.from_config(config)


#: ``model_type`` -> its family (:func:`register`)
_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    for t in family.model_types:
        if t in _FAMILIES:
            raise ValueError(f"model_type {t!r} is claimed by two families")
        _FAMILIES[t] = family
    return family

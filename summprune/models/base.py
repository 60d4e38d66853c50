"""The family registry and what a family declares (:class:`Family`, :class:`Structure`,
:class:`Attention`): the base of the family layer, imported by each family module
(``from .base import Family, ...``) and by ``summprune.models``, which imports the families. Read
it through :mod:`summprune.models`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # annotations only: the family layer imports no torch (config.py reads it)
    from torch import nn


#: The attention kinds structured pruning cuts heads of (:attr:`Attention.modules`' keys).
ATTENTION_KINDS = ("enc_self", "dec_self", "cross")


@dataclass(frozen=True)
class Attention:
    """Where a family's attention heads live and how one is cut (structured pruning).

    A head is a ``head_size``-row slice of each of ``qkv`` (weights and biases) and the matching
    column slice of ``out`` (its bias stays whole); ``per_head`` tables (T5's
    ``relative_attention_bias``, one column per head) are cut along their head axis."""

    #: kind (:data:`ATTENTION_KINDS`) -> (stack, path of the attention module within one block)
    modules: dict[str, tuple[str, str]]
    #: the query, key and value projections (rows are heads x head size) and the output projection
    qkv: tuple[str, str, str]
    out: str
    #: ``config -> head size`` (T5: ``d_kv``; BART: ``head_dim`` once heads were cut, else
    #: ``d_model / heads``)
    head_size: Callable[[Any], int]
    #: ``(config, kept heads) -> None``: write the smaller head count into a copy of the config
    #: (and whatever else the family needs to build the model with it)
    set_heads: Callable[[Any, int], None]
    #: ``(parameter name within the attention module, axis of its heads)`` of per-head tables
    per_head: tuple[tuple[str, int], ...] = ()
    #: per-head tables that belong to the stack and live in its first block only (T5's position
    #: bias): the smaller model's first block takes them from the original's first block
    stack_tables: tuple[str, ...] = ()


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
    #: stack -> the config key of its number of attention heads
    heads_key: dict[str, str] = field(default_factory=dict)
    #: where heads live and how one is cut; None: heads cannot be cut. Every attention of the
    #: model keeps the same number of heads (T5Config has one ``num_heads``; CTranslate2's
    #: converters read one head count for both stacks of every family here)
    attention: Attention | None = None

    @property
    def heads(self) -> bool:
        """Heads can be cut."""
        return self.attention is not None


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
    #: ``(spec, model, tokenizer) -> None``: fix-ups of the CTranslate2 model spec the converter
    #: built (its config's start token, ...)
    ct2_spec: Callable[[Any, nn.Module, Any], None] = field(default=lambda spec, model, tokenizer: None)
    #: ``(tokens, model) -> tokens``: the vocabulary the converter is given (the tokenizer's,
    #: padded to the embedding rows), as the family's converter expects it
    ct2_vocabulary: Callable[[list, nn.Module], list] = field(default=lambda tokens, model: tokens)
    #: regexes of state-dict names the model computes and ``save_pretrained`` leaves out
    #: (Marian's sinusoidal position tables): a saved folder may lack them
    unsaved: tuple[str, ...] = ()
    #: the transformers class of the family's models (``config -> class name``); the compact
    #: format records it and refuses a manifest naming another
    model_class: Callable[[Any], str] = field(default=lambda config: "")
    #: ``(model, config) -> None``: fix-ups of a freshly built model: what ``config`` describes
    #: beyond what transformers builds (BART's attention narrowed to ``head_dim`` once heads were
    #: cut; ``standard(config)`` is False there), generation defaults of the family's checkpoints
    reshape: Callable[[nn.Module, Any], None] = field(default=lambda model, config: None)
    #: ``config -> bool``: plain ``from_pretrained`` builds the model ``config`` describes
    standard: Callable[[Any], bool] = field(default=lambda config: True)

    def build(self, config) -> nn.Module:
        """A randomly initialised model of ``config`` (under ``torch.device('meta')``: shapes only)."""
        from transformers import AutoModelForSeq2SeqLM

        model = AutoModelForSeq2SeqLM.from_config(config)
        self.reshape(model, config)
        return model

    def class_name(self, config) -> str:
        from transformers import AutoModelForSeq2SeqLM
        from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

        return self.model_class(config) or MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES.get(
            getattr(config, "model_type", "") or "", AutoModelForSeq2SeqLM.__name__)

    def from_pretrained(self, name: str) -> nn.Module:
        """The model of a ``save_pretrained`` directory: transformers' own loader where it builds
        the model the config describes; else the family's model (:meth:`build`) given the folder's
        safetensors, every tensor the model needs present (:attr:`unsaved` and tied copies aside)
        and none it does not know."""
        from transformers import AutoConfig, AutoModelForSeq2SeqLM

        config = AutoConfig.from_pretrained(name)
        if self.standard(config):
            return AutoModelForSeq2SeqLM.from_pretrained(name)
        return _load_reshaped(self, config, Path(name))


_FAMILIES: dict[str, Family] = {}


def _load_reshaped(fam: Family, config, d: Path) -> nn.Module:
    import re

    from safetensors.torch import load_file

    files = sorted(d.glob("model*.safetensors"))
    sd: dict = {}
    for f in files:
        sd.update(load_file(str(f)))
    model = fam.build(config)
    groups: dict[int, list[str]] = {}
    for k, t in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), []).append(k)
    missing = [g[0] for g in groups.values() if not any(k in sd for k in g)
               and not any(re.search(rx, g[0]) for rx in fam.unsaved)]
    unexpected = sorted(set(sd) - {k for g in groups.values() for k in g})
    if missing or unexpected:
        raise ValueError(f"{d}: the weights do not fit the model config.json describes: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.load_state_dict(sd, strict=False)
    if getattr(model, "generation_config", None) is not None and (d / "generation_config.json").is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(str(d))
    return model.eval()


def family_names() -> tuple[str, ...]:
    """The registered families' names, each once, in registration order."""
    return tuple(dict.fromkeys(f.name for f in _FAMILIES.values()))


def register(family: Family) -> Family:
    for t in family.model_types:
        if t in _FAMILIES:
            raise ValueError(f"model_type {t!r} is claimed by two families")
        _FAMILIES[t] = family
    return family

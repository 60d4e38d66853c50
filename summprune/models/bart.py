"""BART and Pegasus: one layout (``model.encoder.layers.N.self_attn.{q,k,v,out}_proj``, ``fc1``/
``fc2``, decoder ``encoder_attn``; biases everywhere but ``lm_head``), learned (BART) or
sinusoidal (Pegasus) positions, ``final_logits_bias``, and an output projection tied to the shared
embedding.

Heads: the head size is ``d_model / heads`` in transformers' BART attention, so a model with
fewer heads of the same size is not a config transformers can build. Once heads are cut, the
config records ``head_dim`` (the original head size) and :func:`narrow_attention` gives every
attention ``heads x head_dim``-wide projections (transformers' forward reads the head count off
the width); such a folder is loaded by this package (``Family.from_pretrained``), not by plain
``from_pretrained``. Every attention keeps the same number of heads: the two ``*_attention_heads``
keys are set alike, because CTranslate2's converter reads ``encoder_attention_heads`` for both
stacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing the family layer imports no torch (config.py reads it)
    from torch import nn

from .base import Attention, Family, Structure, register

GROUP_PATTERNS = {
    "enc_self_attn": r"^model\.encoder\.layers\.\d+\.self_attn\.(q|k|v|out)_proj$",
    "enc_ffn": r"^model\.encoder\.layers\.\d+\.(fc1|fc2)$",
    "dec_self_attn": r"^model\.decoder\.layers\.\d+\.self_attn\.(q|k|v|out)_proj$",
    "cross_attn": r"^model\.decoder\.layers\.\d+\.encoder_attn\.(q|k|v|out)_proj$",
    "dec_ffn": r"^model\.decoder\.layers\.\d+\.(fc1|fc2)$",
    "lm_head": r"^lm_head$",
}

#: bart-large / pegasus-large are well inside (vocab 96103, d_model 1024, 16 heads, 16 layers,
#: ffn 4096, 1024 positions)
CONFIG_LIMITS = {
    "vocab_size": 1_000_000, "d_model": 65_536, "encoder_layers": 128, "decoder_layers": 128,
    "encoder_attention_heads": 1_024, "decoder_attention_heads": 1_024, "encoder_ffn_dim": 1_048_576,
    "decoder_ffn_dim": 1_048_576, "max_position_embeddings": 1_048_576,
}


def _tiny(config_cls):
    def tiny_config(vocab_size: int, d_model: int = 64, layers: int = 2, heads: int = 4, d_ff: int = 128,
                    pad_id: int = 0, eos_id: int = 1, max_positions: int = 256):
        return config_cls(
            vocab_size=vocab_size, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
            encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=d_ff,
            decoder_ffn_dim=d_ff, max_position_embeddings=max_positions, pad_token_id=pad_id,
            eos_token_id=eos_id, bos_token_id=eos_id, decoder_start_token_id=pad_id, forced_eos_token_id=eos_id,
        )
    return tiny_config


def _bart_config(**kw):
    from transformers import BartConfig

    return BartConfig(**kw)


def _pegasus_config(**kw):
    from transformers import PegasusConfig

    return PegasusConfig(**kw)


def _freeze_sinusoids(model: nn.Module) -> None:
    # Pegasus' sinusoidal position tables are fixed; from_pretrained hands them back trainable
    for name, p in model.named_parameters():
        if name.endswith("embed_positions.weight"):
            p.requires_grad_(False)


HEADS_KEYS = {"encoder": "encoder_attention_heads", "decoder": "decoder_attention_heads"}
_ATTENTION_MODULES = {"enc_self": ("encoder", "self_attn"), "dec_self": ("decoder", "self_attn"),
                      "cross": ("decoder", "encoder_attn")}
_QKV, _OUT = ("q_proj", "k_proj", "v_proj"), "out_proj"


def head_size(config) -> int:
    """``head_dim`` once heads were cut, else transformers' ``d_model / encoder_attention_heads``."""
    hd = getattr(config, "head_dim", None)
    return int(hd) if hd else int(config.d_model) // int(config.encoder_attention_heads)


def set_heads(config, n: int) -> None:
    config.head_dim = head_size(config)  # read before the head count changes
    for key in HEADS_KEYS.values():
        setattr(config, key, n)


def standard(config) -> bool:
    """transformers builds this config's attention itself (no heads cut)."""
    return all(head_size(config) * int(getattr(config, k)) == int(config.d_model) for k in HEADS_KEYS.values())


def narrow_attention(model: nn.Module, config) -> None:
    """Projections of ``heads x head_dim`` for every attention where heads were cut (see the
    module docstring); nothing where transformers built them already."""
    if standard(config):
        return
    from torch import nn

    d, inner = int(config.d_model), head_size(config) * int(config.encoder_attention_heads)
    for stack in ("encoder", "decoder"):
        for block in model.get_submodule(f"model.{stack}.layers"):
            for _, (s, path) in _ATTENTION_MODULES.items():
                if s != stack:
                    continue
                att = block.get_submodule(path)
                dev, dtype = att.q_proj.weight.device, att.q_proj.weight.dtype
                for name in _QKV:
                    setattr(att, name, nn.Linear(d, inner, bias=getattr(att, name).bias is not None, device=dev,
                                                 dtype=dtype))
                setattr(att, _OUT, nn.Linear(inner, d, bias=att.out_proj.bias is not None, device=dev, dtype=dtype))
                # transformers set these from d_model / heads: the head size is the original one
                att.head_dim = head_size(config)
                att.scaling = att.head_dim ** -0.5
                att.num_heads = int(config.encoder_attention_heads)


#: blocks, FFN neurons and heads can be cut (heads: the same count in every attention)
STRUCTURE = Structure(blocks={"encoder": "model.encoder.layers", "decoder": "model.decoder.layers"},
                      ffn={"encoder": "", "decoder": ""}, ffn_in=("fc1",), ffn_out="fc2",
                      ffn_dim={"encoder": "encoder_ffn_dim", "decoder": "decoder_ffn_dim"},
                      layers={"encoder": "encoder_layers", "decoder": "decoder_layers"},
                      heads_key=HEADS_KEYS,
                      attention=Attention(modules=_ATTENTION_MODULES, qkv=_QKV, out=_OUT, head_size=head_size,
                                          set_heads=set_heads))


def ct2_head_dim(spec, model: nn.Module, tokenizer) -> None:
    """CTranslate2 splits each attention's projections into ``encoder_attention_heads`` heads
    (so the head size follows the width) but scales the queries by ``(d_model / heads) ** -0.5``
    unless the spec says otherwise: where heads were cut, give every attention the scale of its
    real head size, as the torch model's ``scaling``."""
    if standard(model.config):
        return
    import numpy as np

    scale = np.dtype("float32").type(head_size(model.config) ** -0.5)
    for stack in (spec.encoder, spec.decoder):
        for layer in stack.layer:
            for name in ("self_attention", "attention"):
                att = getattr(layer, name, None)
                if att is not None:
                    att.queries_scale = scale


def with_head_dim(hook):
    """``hook`` (a family's own spec fix-ups), then :func:`ct2_head_dim`."""
    def both(spec, model, tokenizer) -> None:
        hook(spec, model, tokenizer)
        ct2_head_dim(spec, model, tokenizer)
    return both


def bart_common(group_patterns=GROUP_PATTERNS, config_limits=CONFIG_LIMITS, structure=STRUCTURE) -> dict:
    """What every family of BART's layout shares (BART, Pegasus, mBART, Marian)."""
    return dict(
        group_patterns=group_patterns, config_limits=config_limits, default_prefix="",
        native_tied=lambda config: bool(getattr(config, "tie_word_embeddings", True)),
        max_source_positions=lambda config: int(config.max_position_embeddings), structure=structure,
        # learned (BART) or sinusoidal (Pegasus) tables of max_position_embeddings rows: a longer
        # decoder sequence is a raw IndexError
        max_target_positions=lambda config: int(config.max_position_embeddings),
        decoder_dims=lambda config: (int(config.decoder_layers), head_size(config) * int(config.decoder_attention_heads),
                                     int(config.d_model)),
        reshape=narrow_attention, standard=standard, ct2_spec=ct2_head_dim,
    )


_COMMON = bart_common()


def _ct2_keys(**keys):
    """CTranslate2 4.x reads these config keys, which transformers 5 dropped: set where missing."""
    def prepare(model: nn.Module) -> None:
        for k, v in keys.items():
            if not hasattr(model.config, k):
                setattr(model.config, k, v)
    return prepare


# BART normalises after each sub-layer (post-norm)
BART = register(Family(name="bart", model_types=("bart",), tiny_config=_tiny(_bart_config),
                       ct2_prepare=_ct2_keys(normalize_before=False), **_COMMON))
# Pegasus normalises before each sub-layer (pre-norm) and has no embedding layer norm
PEGASUS = register(Family(name="pegasus", model_types=("pegasus",), tiny_config=_tiny(_pegasus_config),
                          int8_exempt=(r"embed_positions\.weight$",), after_load=_freeze_sinusoids,
                          ct2_prepare=_ct2_keys(normalize_before=True, normalize_embedding=False), **_COMMON))

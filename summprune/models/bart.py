"""BART and Pegasus: one layout (``model.encoder.layers.N.self_attn.{q,k,v,out}_proj``, ``fc1``/
``fc2``, decoder ``encoder_attn``; biases everywhere but ``lm_head``), learned (BART) or
sinusoidal (Pegasus) positions, ``final_logits_bias``, and an output projection tied to the shared
embedding."""

from __future__ import annotations

from torch import nn

from .base import Family, Structure, register

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


#: blocks and FFN neurons can be cut; heads cannot (the head size is d_model / heads)
STRUCTURE = Structure(blocks={"encoder": "model.encoder.layers", "decoder": "model.decoder.layers"},
                      ffn={"encoder": "", "decoder": ""}, ffn_in=("fc1",), ffn_out="fc2",
                      ffn_dim={"encoder": "encoder_ffn_dim", "decoder": "decoder_ffn_dim"},
                      layers={"encoder": "encoder_layers", "decoder": "decoder_layers"},
                      heads_key={"encoder": "encoder_attention_heads", "decoder": "decoder_attention_heads"})

_COMMON = dict(
    group_patterns=GROUP_PATTERNS, config_limits=CONFIG_LIMITS, default_prefix="",
    native_tied=lambda config: bool(getattr(config, "tie_word_embeddings", True)),
    max_source_positions=lambda config: int(config.max_position_embeddings), structure=STRUCTURE,
    # learned (BART) or sinusoidal (Pegasus) tables of max_position_embeddings rows: a longer
    # decoder sequence is a raw IndexError
    max_target_positions=lambda config: int(config.max_position_embeddings),
    decoder_dims=lambda config: (int(config.decoder_layers), int(config.d_model), int(config.d_model)),
)

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

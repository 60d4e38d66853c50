"""T5: t5-small's layout (ReLU FFN ``wi``/``wo``, relative attention, tied embedding), T5 v1.1 /
flan-T5 (gated FFN ``wi_0``/``wi_1``, an output projection of its own) and mT5 (the v1.1 layout)."""

from __future__ import annotations

from .base import Attention, Family, Structure, register

#: encoder layer.0 = self-attention, layer.1 = FFN; decoder layer.0 = self-attention, layer.1 =
#: cross-attention, layer.2 = FFN.
GROUP_PATTERNS = {
    "enc_self_attn": r"^encoder\.block\.\d+\.layer\.0\.SelfAttention\.(q|k|v|o)$",
    "enc_ffn": r"^encoder\.block\.\d+\.layer\.1\.DenseReluDense\.(wi|wi_0|wi_1|wo)$",
    "dec_self_attn": r"^decoder\.block\.\d+\.layer\.0\.SelfAttention\.(q|k|v|o)$",
    "cross_attn": r"^decoder\.block\.\d+\.layer\.1\.EncDecAttention\.(q|k|v|o)$",
    "dec_ffn": r"^decoder\.block\.\d+\.layer\.2\.DenseReluDense\.(wi|wi_0|wi_1|wo)$",
    "lm_head": r"^lm_head$",
}

#: t5-11b is well inside (vocab 32128, d_model 1024, d_kv 128, d_ff 65536, 128 heads, 24 layers);
#: num_layers=1000000 hung the loader, vocab_size=5e7 allocated 12.8 GB before any check.
CONFIG_LIMITS = {
    "vocab_size": 1_000_000, "d_model": 65_536, "d_kv": 65_536, "d_ff": 1_048_576, "num_heads": 1_024,
    "num_layers": 128, "num_decoder_layers": 128, "relative_attention_num_buckets": 65_536,
    "relative_attention_max_distance": 1_048_576,
}


def native_tied(config) -> bool:
    # transformers 5 sets tie_word_embeddings=True on every T5 config and keeps what the original
    # flag meant in scale_decoder_outputs (t5-small: True; v1.1/flan-T5: False); mT5 is untied
    if getattr(config, "model_type", "t5") == "mt5":
        return bool(getattr(config, "scale_decoder_outputs", False))
    return bool(getattr(config, "scale_decoder_outputs", getattr(config, "tie_word_embeddings", True)))


def tiny_config(vocab_size: int, d_model: int = 64, layers: int = 2, heads: int = 4, d_ff: int = 128,
                pad_id: int = 0, eos_id: int = 1, gated: bool = False, tied: bool = True, mt5: bool = False):
    """A T5 of the t5-small layout (ReLU FFN, tied embedding, relative attention), only smaller;
    ``gated`` / ``tied=False``: the T5 v1.1 / flan-T5 layout; ``mt5``: an ``MT5Config`` (mT5's
    classes; its checkpoints are gated and untied)."""
    from transformers import MT5Config, T5Config

    return (MT5Config if mt5 else T5Config)(
        vocab_size=vocab_size, d_model=d_model, d_kv=d_model // heads, d_ff=d_ff, num_layers=layers,
        num_decoder_layers=layers, num_heads=heads, relative_attention_num_buckets=32,
        relative_attention_max_distance=128, dropout_rate=0.1,
        feed_forward_proj="gated-gelu" if gated else "relu", tie_word_embeddings=tied,
        pad_token_id=pad_id, eos_token_id=eos_id, decoder_start_token_id=pad_id,
    )


def _ct2_prepare(model) -> None:
    # CTranslate2's T5 converter scales the decoder output by d_model ** -0.5 whenever
    # tie_word_embeddings is set, which transformers 5 sets on every T5 and mT5 config; the torch
    # model scales only where the embedding is tied by nature (t5-small: yes; flan-T5, mT5: no)
    model.config.tie_word_embeddings = native_tied(model.config)


def _set_heads(config, n: int) -> None:
    config.num_heads = n  # d_kv, the head size, is a key of its own


#: Heads: ``d_kv``-row slices of ``q``/``k``/``v`` and column slices of ``o``. The relative-position
#: bias (one column per head) is computed once per stack, in block 0, and added to every block's
#: self-attention: self-attention heads are chosen once per stack (structured.plan_structure).
ATTENTION = Attention(
    modules={"enc_self": ("encoder", "layer.0.SelfAttention"), "dec_self": ("decoder", "layer.0.SelfAttention"),
             "cross": ("decoder", "layer.1.EncDecAttention")},
    qkv=("q", "k", "v"), out="o", head_size=lambda config: int(config.d_kv), set_heads=_set_heads,
    per_head=(("relative_attention_bias.weight", 1),), stack_tables=("relative_attention_bias.weight",))

T5 = register(Family(
    name="t5", model_types=("t5", "mt5"), group_patterns=GROUP_PATTERNS, config_limits=CONFIG_LIMITS,
    default_prefix="summarize: ", native_tied=native_tied, max_source_positions=lambda config: None,
    max_target_positions=lambda config: None,  # relative attention: any length
    decoder_dims=lambda config: (int(config.num_decoder_layers), int(config.num_heads) * int(config.d_kv),
                                 int(config.d_model)),
    tiny_config=tiny_config, int8_exempt=(r"relative_attention_bias\.weight$",),
    structure=Structure(blocks={"encoder": "encoder.block", "decoder": "decoder.block"},
                        ffn={"encoder": "layer.1.DenseReluDense", "decoder": "layer.2.DenseReluDense"},
                        ffn_in=("wi", "wi_0", "wi_1"), ffn_out="wo", ffn_dim={"encoder": "d_ff", "decoder": "d_ff"},
                        layers={"encoder": "num_layers", "decoder": "num_decoder_layers"},
                        heads_key={"encoder": "num_heads", "decoder": "num_heads"}, attention=ATTENTION),
    ct2_prepare=_ct2_prepare,
))

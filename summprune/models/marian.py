"""Marian (``MarianMTModel``, the OPUS-MT translation models): BART's module layout
(``model.encoder.layers.N.self_attn.{q,k,v,out}_proj``, ``fc1``/``fc2``, decoder ``encoder_attn``),
normalised after each sub-layer (post-norm) with no embedding layer norm, embeddings scaled by
``sqrt(d_model)``, ``final_logits_bias``, and sinusoidal position tables that the model computes
and ``save_pretrained`` leaves out (``_keys_to_ignore_on_save``). The pad token is the last
vocabulary row and the decoder starts from it (its embedding row is zero); CTranslate2's converter
drops that row and starts from a zero embedding instead."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing the family layer imports no torch (config.py reads it)
    from torch import nn

from .base import Family, register
from .bart import _freeze_sinusoids, _tiny, bart_common, narrow_attention


def _config(**kw):
    from transformers import MarianConfig

    # Marian's convention (MarianTokenizer's "<pad>" is its last token): the pad is a row of its
    # own after the tokenizer's tokens, and the decoder starts from it
    kw["pad_token_id"] = kw["decoder_start_token_id"] = kw["vocab_size"]
    kw["vocab_size"] += 1
    kw.pop("bos_token_id", None)
    return MarianConfig(scale_embedding=True, **kw)


def _ct2_vocabulary(tokens: list, model: nn.Module) -> list:
    """CTranslate2's Marian converter removes the last embedding row as the pad row, and the last
    vocabulary entry with it if it is named ``<pad>`` (MarianTokenizer's layout): name it so
    (renaming any other ``<pad>``; ids map through this list, names only need to be unique)."""
    pad = int(model.config.pad_token_id)
    if pad != len(tokens) - 1:
        raise ValueError(f"a Marian model converts for CTranslate2 only with its pad token as the last vocabulary "
                         f"row (the converter drops that row); this one's pad_token_id is {pad} of {len(tokens)} rows")
    taken = set(tokens)  # unique names (converter_vocabulary)
    out = list(tokens[:-1])
    for i, t in enumerate(out):
        if t == "<pad>":  # the tokenizer's own pad elsewhere: a name no token has
            while t in taken:
                t = f"<{t}>"
            out[i] = t
            taken.add(t)
    return out + ["<pad>"]


def _ct2_prepare(model: nn.Module) -> None:
    """The converter starts the decoder from a zero embedding where torch starts it from the pad
    row: equal only while that row is zero (as in OPUS-MT checkpoints); refuse otherwise."""
    pad = int(model.config.pad_token_id)
    row = model.get_decoder().embed_tokens.weight[pad]
    if bool(row.abs().max() != 0):
        raise ValueError(f"this Marian model's pad row (id {pad}, where its decoder starts) is not zero: CTranslate2 "
                         "starts the decoder from a zero embedding, so it would not compute what torch does; use "
                         "--engine torch")


def _reshape(model: nn.Module, config) -> None:
    """BART's layout's reshaping (heads cut), and a Marian never generating its pad row, as an
    OPUS-MT checkpoint's generation config says (``bad_words_ids``; CTranslate2's converter drops
    the row): a model built from a config says so too (a loaded one reads its own file)."""
    narrow_attention(model, config)
    gen = getattr(model, "generation_config", None)
    if gen is not None and not gen.bad_words_ids:
        gen.bad_words_ids = [[int(config.pad_token_id)]]


MARIAN = register(Family(
    name="marian", model_types=("marian",), tiny_config=_tiny(_config),
    int8_exempt=(r"embed_positions\.weight$",), after_load=_freeze_sinusoids,
    unsaved=(r"embed_positions\.weight$",), ct2_prepare=_ct2_prepare, ct2_vocabulary=_ct2_vocabulary,
    **{**bart_common(), "reshape": _reshape}))

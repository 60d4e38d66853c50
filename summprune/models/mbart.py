"""mBART (``MBartForConditionalGeneration``): BART's module layout (``model.encoder.layers.N.
self_attn.{q,k,v,out}_proj``, ``fc1``/``fc2``, decoder ``encoder_attn``), normalised before each
sub-layer (pre-norm) with a layer norm after the embedding and at the end of each stack, learned
positions (offset by 2, as BART's), and an output projection tied to the shared embedding. mBART-50
checkpoints start the decoder from ``</s>`` and force a language code as the first token."""

from __future__ import annotations

from .base import Family, register
from .bart import _ct2_keys, _tiny, bart_common, with_head_dim


def _config(**kw):
    from transformers import MBartConfig

    # mBART-50 starts the decoder from </s> (its eos)
    kw["decoder_start_token_id"] = kw["eos_token_id"]
    return MBartConfig(**kw)


def _ct2_start(spec, model, tokenizer) -> None:
    # CTranslate2's mBART converter leaves the start token unset where the config names mBART-25's
    # tokenizer or none (mBART-25 passes its language code as the start token) and takes </s>
    # otherwise; the torch model starts from its config's decoder_start_token_id: the converted one
    # does too, where the config has one
    start = getattr(model.config, "decoder_start_token_id", None)
    if start is not None:
        spec.config.decoder_start_token = tokenizer.convert_ids_to_tokens(int(start))


MBART = register(Family(
    name="mbart", model_types=("mbart",), tiny_config=_tiny(_config),
    ct2_prepare=_ct2_keys(normalize_before=True), **{**bart_common(), "ct2_spec": with_head_dim(_ct2_start)}))

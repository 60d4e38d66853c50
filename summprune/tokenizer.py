"""A T5-compatible tokenizer trained on the fly, for models built from scratch (the tiny smoke model,
the benchmarks' proxies): the real t5-small tokenizer is loaded with ``modeling.load_tokenizer``."""

from __future__ import annotations

import string
from collections.abc import Iterable

#: T5's special-token layout (ids 0, 1, 2): the decoder starts from <pad>.
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000, model_max_length: int = 4096):
    """A T5-compatible BPE tokenizer trained on ``texts`` in seconds.

    ``<pad>``=0, ``</s>``=1, ``<unk>``=2; every encoded sequence ends with ``</s>``. Whitespace
    is collapsed to single spaces (as T5's SentencePiece does), words carry a leading ``▁``
    (Metaspace) and runs of punctuation are split off words, so "Act" is the same token in
    "Clean Air Act (42" and "Clean Air Act." and ``decode(..., skip_special_tokens=True)``
    gives back the whitespace-normalised text (with a space after every opening ````). All
    printable ASCII characters are in the alphabet, so only non-ASCII characters unseen in
    training become ``<unk>``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    pad, eos, unk = SPECIAL_TOKENS
    tk = Tokenizer(models.BPE(unk_token=unk, fuse_unk=True))
    # "``" opens a quotation in US bill texts with no space before the quoted word ("cited as the
    # ``Clean Air Act''"); a space after it gives that word its leading "▁", so it is the same token
    # as the word elsewhere (in the summary), which a copying model needs.
    tk.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("``", "`` "),
                                          normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()])
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        pre_tokenizers.Split(Regex(r"▁?[^\w\s▁]+"), behavior="isolated"),
    ])
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    alphabet = sorted(set(string.printable) - set(string.whitespace)) + ["▁"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=list(SPECIAL_TOKENS), initial_alphabet=alphabet)
    tk.train_from_iterator((t for t in texts), trainer=trainer)
    ids = {t: tk.token_to_id(t) for t in SPECIAL_TOKENS}
    assert ids == {pad: 0, eos: 1, unk: 2}, ids
    tk.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                      special_tokens=[(eos, 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token=pad, eos_token=eos, unk_token=unk,
                                   model_max_length=model_max_length, padding_side="right",
                                   clean_up_tokenization_spaces=False)

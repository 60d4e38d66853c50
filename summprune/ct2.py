"""The CTranslate2 engine: the same summaries from a C++ inference runtime, beam search included.

``Ct2Model.from_dir(model_dir)`` converts a model directory once with
``ctranslate2.converters.TransformersConverter`` and caches the result under
``$SUMMPRUNE_CACHE`` (default ``~/.cache/summprune``)``/ctranslate2/<key>``, the key being the
sha256 of every file the conversion reads (config, weights, generation config and tokenizer) and
the ctranslate2 version, so a re-export or a changed vocabulary converts again and an unchanged
model never does. Each entry holds :data:`ENTRY_MANIFEST` (its key and every file's sha256), checked on
use: an entry that is not the conversion its key names (another model's put there, a file changed
since, a symlink) is converted again with a warning. The temp folder of a conversion that was killed
is removed by the next one.
Every format converts: the model is loaded with ``summprune.load_model`` (compact and course
directories included, checks and all; a compact int8 model dequantized) and handed to the
converter in memory, with no dense copy written to disk first; structurally pruned (smaller) models
convert like any of their family (the family's hooks fix what its converter gets wrong: the
query scale of a BART-layout model with heads cut, mBART's start token, Marian's pad row). The vocabulary it writes is the tokenizer's padded to the model's embedding
rows with names of their own (:func:`converter_vocabulary`), the same way for every family: a
checkpoint with more rows than tokens (t5-small; BART, Pegasus, mT5 ones too) converts, and the
engine maps ids through that vocabulary, so a padding id the model picks is torch's id too.

:func:`summprune.generate.generate_summaries` takes a ``Ct2Model`` where it takes a torch model:
batching, progress, resume callbacks and decoding are shared. The decoding options map to
CTranslate2's ``translate_batch``: ``num_beams`` -> ``beam_size``, ``max_length`` (which counts the
decoder start token) -> ``max_decoding_length = max_length - 1``, ``min_new_tokens`` ->
``min_decoding_length``, and ``no_repeat_ngram_size``, ``repetition_penalty``, ``length_penalty``
by the same names. Greedy fp32 gives the torch engine's tokens (tested); beam search can differ in
ties and in when a finished beam stops the search (measured by benchmarks/generate_speed.py).
``ctranslate2`` is imported only when this engine is used.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import warnings
from pathlib import Path
from typing import Any

#: generate_csv.py's --dtype per device: CTranslate2 compute types.
COMPUTE_TYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "int8"}
DEVICE_DTYPES = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16", "bf16", "int8")}

#: Bumped when what a conversion writes changes for the same model files (part of the cache key):
#: 2 = the vocabulary padded to the model's embedding with unique names, for every family.
CONVERSION_VERSION = 2


def import_ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise ValueError("the ctranslate2 engine needs the ctranslate2 package: pip install -r requirements.txt "
                         "(or pip install ctranslate2)") from None
    return ctranslate2


def check_dtype(device: str, dtype: str) -> None:
    """ValueError unless CTranslate2 runs ``dtype`` on ``device`` ('cpu' or 'cuda')."""
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    if dtype not in DEVICE_DTYPES[kind]:
        raise ValueError(f"the ctranslate2 engine runs {', '.join(DEVICE_DTYPES[kind])} on {kind}, not {dtype!r}")


def cache_root() -> Path:
    from .io.files import cache_dir

    return cache_dir("ctranslate2")


def conversion_files(model_dir: str | Path) -> list[str]:
    """The names of every file of ``model_dir`` a conversion reads: the model's files, its
    generation_config.json and checksums, and the tokenizer files (copied into the conversion,
    whose vocabulary comes from them). A tokenizer file that is a symlink leaving the folder is a
    ValueError: the conversion would copy whatever it points at into the cache."""
    from .io.hf import file_inside, model_file_names, tokenizer_files

    d = Path(model_dir)
    for f in tokenizer_files(d):
        file_inside(d, f.name, "the tokenizer files the ctranslate2 conversion copies")
    return model_file_names(d)


def model_key(model_dir: str | Path) -> str:
    """sha256 of every file a conversion reads (names and bytes, see :func:`conversion_files`),
    the ctranslate2 version and :data:`CONVERSION_VERSION`: a changed vocabulary or decoding
    config converts again."""
    from .io.files import sha256_file

    d = Path(model_dir)
    h = hashlib.sha256(f"ctranslate2 {import_ctranslate2().__version__} {CONVERSION_VERSION}\n".encode())
    for name in conversion_files(d):
        h.update(f"{name}\0{sha256_file(d / name)}\n".encode())
    return h.hexdigest()[:24]


def _remove_stale_conversions(root: Path) -> None:
    """Remove the temp folders (hundreds of MB each) of conversions whose process was killed:
    ``<key>.tmp-<pid>-<hex>`` with that pid no longer alive, as an export cleans its own."""
    from .io.files import _remove_stale_siblings

    for key in {p.name.split(".tmp-")[0] for p in root.glob("*.tmp-*")}:
        _remove_stale_siblings(root / key)


#: In each cache entry: its key and the sha256 of every file of the conversion (checked on use).
ENTRY_MANIFEST = "summprune-entry.json"


def _cached(out: Path, key: str, log=None) -> bool:
    """True if the cache entry ``out`` holds the conversion its key names (its files as its
    manifest records them); an entry that does not (another model's conversion put there, a
    symlink, a file changed since, an entry written before entries had manifests) is removed,
    with a warning, to be converted again."""
    from .io.files import check_seal

    if not out.exists() and not out.is_symlink():
        return False
    why = ("it is a symlink (to " + os.readlink(out) + ")" if out.is_symlink() else
           check_seal(out / ENTRY_MANIFEST, out, {"key": key}, required=("model.bin",)))
    if why is None:
        return True
    msg = f"the cached ctranslate2 conversion {out} is not the one of its key: {why}; converting again"
    log(f"warning: {msg}") if log else warnings.warn(msg, stacklevel=3)
    if out.is_symlink() or not out.is_dir():
        out.unlink()  # the link, never what it points at
    else:
        shutil.rmtree(out)
    return False


def convert(model_dir: str | Path, log=None) -> Path:
    """The CTranslate2 directory of ``model_dir``, converted now if not in the cache yet. The
    conversion is written beside the cache entry and renamed into place only when complete; an
    entry is used only while its files are those its manifest records for this key."""
    from .io.files import seal

    ct2 = import_ctranslate2()
    key = model_key(model_dir)
    root = cache_root()
    out = root / key
    if root.is_dir():
        _remove_stale_conversions(root)
    if _cached(out, key, log):
        return out
    from .export import load_model
    from .io.hf import meta_model
    from .modeling import load_tokenizer
    from .models import family_of

    if (Path(model_dir) / "config.json").is_file():
        # the converter copies every weight into its own arrays while the model is held: two
        # dense copies, checked against the memory budget before either is allocated
        meta_model(Path(model_dir), copies=2, what="converting the model for ctranslate2 (the model and its converted copy)")
    root.mkdir(parents=True, exist_ok=True)
    # the pid in the name tells a later conversion whether this one is still running
    tmp = root / f"{key}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        model = load_model(model_dir)  # every format, checked; pruning permanent; compact int8 dequantized
        fam = family_of(model)
        fam.ct2_prepare(model)  # what the converter needs of this family
        tok = load_tokenizer(model_dir)
        if getattr(tok, "bos_token", None) is None and getattr(model.config, "bos_token_id", None) is not None:
            # the BART/Pegasus converters copy the tokenizer's bos_token into the converted config,
            # and a tokenizer without one (T5's SentencePiece, under a BART-layout model) wrote null:
            # name the model's own bos_token_id (this tokenizer object lives for this conversion only)
            tok.bos_token = tok.convert_ids_to_tokens(int(model.config.bos_token_id))
        # one vocabulary for every family, as long as the model's embedding (see converter_vocabulary)
        # (as the family's converter expects it: Marian's names its last, pad, row "<pad>")
        vocab = _ConverterTokenizer(tok, fam.ct2_vocabulary(converter_vocabulary(tok, _embedding_rows(model)), model))
        if log:
            log(f"converting {model_dir} for ctranslate2 (once; cached in {out})")

        class _Loaded(ct2.converters.TransformersConverter):
            """The converter fed the model already in memory: no dense copy of it on disk first
            (it reads only config.json from ``model_dir``, as every format has one)."""

            def load_model(self, model_class, model_name_or_path, **kwargs):
                return model

            def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
                return vocab

            def _load(self):
                spec = super()._load()
                fam.ct2_spec(spec, model, vocab)  # the family's fix-ups of what its converter built
                return spec

        _Loaded(str(model_dir)).convert(str(tmp / "ct2"), force=True)
        del model
        seal(tmp / "ct2" / ENTRY_MANIFEST, tmp / "ct2", None, {"key": key})
        try:
            os.rename(tmp / "ct2", out)
        except OSError:  # another process converted it meanwhile
            if not (out / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _embedding_rows(model) -> int:
    return int(model.get_input_embeddings().weight.shape[0])


def converter_vocabulary(tokenizer: Any, size: int) -> list[str]:
    """The vocabulary a conversion writes: the tokenizer's tokens in id order, exactly ``size``
    long (the model's embedding rows), which CTranslate2 requires of every family.

    Checkpoints often have more embedding rows than their tokenizer has tokens (t5-small: 32128
    against 32100; BART, Pegasus and mT5 checkpoints can too). CTranslate2's T5 converter pads
    with ``<extra_id_N>`` names, which t5-small's tokenizer already holds (duplicates); its
    BART and Pegasus converters do not pad at all and the conversion fails ("Source vocabulary
    0 has size 32100 but the model expected a vocabulary of size 32128"). Here every id the
    tokenizer does not name (past its end, or a gap) gets a name of its own that no token has,
    ``<unused_ID>``, so the token <-> id mapping stays one to one; a tokenizer id past the
    model's rows is dropped (the model has no row for it; CTranslate2's BART converter cuts the
    same way)."""
    tokens: list[str | None] = [None] * size
    vocab = tokenizer.get_vocab()
    for token, i in sorted(vocab.items(), key=lambda item: item[1]):
        if 0 <= i < size and tokens[i] is None:
            tokens[i] = token
    for i, t in enumerate(tokens):
        if t is None:
            name = f"<unused_{i}>"
            while name in vocab:
                name = f"<{name}>"
            tokens[i] = name
    return tokens  # type: ignore[return-value]


class _ConverterTokenizer:
    """The tokenizer as the converter sees it: ``get_vocab`` (and ids -> tokens) from
    :func:`converter_vocabulary`, everything else (special tokens) the tokenizer's own."""

    def __init__(self, tokenizer: Any, tokens: list[str]):
        self._tokenizer = tokenizer
        self._tokens = tokens

    def get_vocab(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self._tokens)}

    def __len__(self) -> int:
        return len(self._tokens)

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self._tokens[ids] if 0 <= ids < len(self._tokens) else self._tokenizer.convert_ids_to_tokens(ids)
        return [self.convert_ids_to_tokens(int(i)) for i in ids]

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def read_vocabulary(path: str | Path) -> list[str]:
    """The (target) vocabulary of a CTranslate2 model directory, in id order."""
    from .io.files import read_json

    d = Path(path)
    for name in ("shared_vocabulary", "target_vocabulary"):
        if (d / f"{name}.json").is_file():
            return list(read_json(d / f"{name}.json"))
        if (d / f"{name}.txt").is_file():
            return (d / f"{name}.txt").read_text(encoding="utf-8").split("\n")[:-1]
    raise ValueError(f"{d}: no vocabulary file (shared_vocabulary.json or target_vocabulary.json)")


class Ct2Model:
    """A converted model loaded by ``ctranslate2.Translator``; what generate_summaries runs for
    ``engine='ctranslate2'``."""

    def __init__(self, translator: Any, tokenizer: Any, device: str, dtype: str, forced_eos: bool = False,
                 vocabulary: list[str] | None = None, config: Any = None):
        self.translator = translator
        #: the model's transformers config (generation checks its positions, vocabulary and memory)
        self.config = config
        self.tokenizer = tokenizer
        # ids <-> tokens through the converted vocabulary (the tokenizer's, padded to the model's
        # rows): an id past the tokenizer's end (a padding row the model may still pick) comes
        # back as the same id that torch's generate gives; None: the tokenizer's own mapping
        self.vocabulary = vocabulary
        self._ids = None if vocabulary is None else {}
        for i, t in enumerate(vocabulary or ()):
            self._ids.setdefault(t, i)  # CTranslate2 reads a repeated token as its first id too
        self.device = device
        self.dtype = dtype
        # transformers makes the last token EOS when the model's generation config forces one
        # (BART, Pegasus): one content token fewer than max_length - 1; CTranslate2 has no such
        # rule, so it is given one decoding step fewer
        self.forced_eos = forced_eos

    @classmethod
    def from_dir(cls, model_dir: str | Path, tokenizer: Any, *, device: str = "cpu", dtype: str = "fp32",
                 threads: int | None = None, log=None) -> "Ct2Model":
        check_dtype(device, dtype)
        ct2 = import_ctranslate2()
        path = convert(model_dir, log=log)
        kind, _, index = str(device).partition(":")
        import torch

        def load():
            return ct2.Translator(str(path), device=kind, device_index=int(index or 0),
                                  compute_type=COMPUTE_TYPES[dtype], inter_threads=1,
                                  intra_threads=threads or torch.get_num_threads())

        try:
            translator = load()
        except RuntimeError as e:
            # a cached conversion this CTranslate2 cannot read (e.g. one written before a converter
            # fix: a null bos_token) is converted again, once
            if log:
                log(f"the cached conversion {path} does not load ({e}); converting again")
            shutil.rmtree(path, ignore_errors=True)
            path = convert(model_dir, log=log)
            translator = load()
        from .io.files import read_json
        from .io.hf import load_generation_config, read_config

        gen = load_generation_config(Path(model_dir))
        cfg = read_json(Path(model_dir) / "config.json")
        forced = (getattr(gen, "forced_eos_token_id", None) if gen is not None
                  else (cfg.get("forced_eos_token_id") if isinstance(cfg, dict) else None)) is not None
        return cls(translator, tokenizer, device, dtype, forced_eos=forced, vocabulary=read_vocabulary(path),
                   config=read_config(Path(model_dir)))

    def generate_ids(self, batch: list[list[int]], decoding: dict) -> list[list[int]]:
        """Token ids of each summary (start token and EOS not included) for ``batch`` of source
        token ids, with the options of :data:`summprune.config.DECODING_DEFAULTS`."""
        tok = self.tokenizer
        if self.vocabulary is not None:
            voc = self.vocabulary
            bad = next((i for ids in batch for i in ids if not 0 <= i < len(voc)), None)
            if bad is not None:  # torch would fail on it too, with an index error
                raise ValueError(f"token id {bad} is past the model's {len(voc)} embedding rows: the tokenizer "
                                 "does not belong to this model")
            source = [[voc[i] for i in ids] for ids in batch]
        else:
            source = [tok.convert_ids_to_tokens(ids) for ids in batch]
        res = self.translator.translate_batch(
            source, beam_size=decoding["num_beams"],
            max_decoding_length=decoding["max_length"] - (2 if self.forced_eos else 1),
            min_decoding_length=decoding["min_new_tokens"], no_repeat_ngram_size=decoding["no_repeat_ngram_size"],
            repetition_penalty=decoding["repetition_penalty"], length_penalty=decoding["length_penalty"],
            max_batch_size=len(batch), num_hypotheses=1, return_scores=False,
            max_input_length=0)  # the tokenizer truncated already; CTranslate2's default cuts at 1024
        if self._ids is not None:
            return [[self._ids[t] for t in r.hypotheses[0]] for r in res]
        return [tok.convert_tokens_to_ids(r.hypotheses[0]) for r in res]

"""The CTranslate2 engine: the same summaries from a C++ inference runtime, beam search included.

``Ct2Model.from_dir(model_dir)`` converts a model directory once with
``ctranslate2.converters.TransformersConverter`` and caches the result under
``$SUMMPRUNE_CACHE`` (default ``~/.cache/summprune``)``/ctranslate2/<key>``, the key being the
sha256 of every file the conversion reads (config, weights, generation config and tokenizer) and
the ctranslate2 version, so a re-export or a changed vocabulary converts again and an unchanged
model never does. The temp folder of a conversion that was killed is removed by the next one.
Every format converts: the model is loaded with ``summprune.load_model`` (compact and course
directories included, checks and all; a compact int8 model dequantized) and handed to the
converter in memory, with no dense copy written to disk first; structurally pruned (smaller) T5s
convert like any T5.

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
from pathlib import Path
from typing import Any

#: generate_csv.py's --dtype per device: CTranslate2 compute types.
COMPUTE_TYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "int8"}
DEVICE_DTYPES = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16", "bf16", "int8")}
#: The files that define a model (the cache key hashes them, and the others of conversion_files).
_MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "compact.json",
                "compact.safetensors", "model_state_dict.pth")


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
    from .io.hf import CHECKSUMS, TOKENIZER_FILES, file_inside, tokenizer_files

    d = Path(model_dir)
    for f in tokenizer_files(d):
        file_inside(d, f.name, "the tokenizer files the ctranslate2 conversion copies")
    shards = sorted(p.name for p in d.glob("model-*.safetensors"))
    names = [*_MODEL_FILES, *shards, "generation_config.json", CHECKSUMS, *TOKENIZER_FILES]
    return [n for n in names if (d / n).is_file()]


def model_key(model_dir: str | Path) -> str:
    """sha256 of every file a conversion reads (names and bytes, see :func:`conversion_files`)
    and the ctranslate2 version: a changed vocabulary or decoding config converts again."""
    from .io.files import sha256_file

    d = Path(model_dir)
    h = hashlib.sha256(f"ctranslate2 {import_ctranslate2().__version__}\n".encode())
    for name in conversion_files(d):
        h.update(f"{name}\0{sha256_file(d / name)}\n".encode())
    return h.hexdigest()[:24]


def _remove_stale_conversions(root: Path) -> None:
    """Remove the temp folders (hundreds of MB each) of conversions whose process was killed:
    ``<key>.tmp-<pid>-<hex>`` with that pid no longer alive, as an export cleans its own."""
    from .io.files import _remove_stale_siblings

    for key in {p.name.split(".tmp-")[0] for p in root.glob("*.tmp-*")}:
        _remove_stale_siblings(root / key)


def convert(model_dir: str | Path, log=None) -> Path:
    """The CTranslate2 directory of ``model_dir``, converted now if not in the cache yet. The
    conversion is written beside the cache entry and renamed into place only when complete."""
    ct2 = import_ctranslate2()
    key = model_key(model_dir)
    root = cache_root()
    out = root / key
    if root.is_dir():
        _remove_stale_conversions(root)
    if (out / "model.bin").is_file():
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
        family_of(model).ct2_prepare(model)  # what the converter needs of this family
        tok = load_tokenizer(model_dir)
        if getattr(tok, "bos_token", None) is None and getattr(model.config, "bos_token_id", None) is not None:
            # the BART/Pegasus converters copy the tokenizer's bos_token into the converted config,
            # and a tokenizer without one (T5's SentencePiece, under a BART-layout model) wrote null:
            # name the model's own bos_token_id (this tokenizer object lives for this conversion only)
            tok.bos_token = tok.convert_ids_to_tokens(int(model.config.bos_token_id))
        if log:
            log(f"converting {model_dir} for ctranslate2 (once; cached in {out})")

        class _Loaded(ct2.converters.TransformersConverter):
            """The converter fed the model already in memory: no dense copy of it on disk first
            (it reads only config.json from ``model_dir``, as every format has one)."""

            def load_model(self, model_class, model_name_or_path, **kwargs):
                return model

            def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
                return tok

        _Loaded(str(model_dir)).convert(str(tmp / "ct2"), force=True)
        del model
        try:
            os.rename(tmp / "ct2", out)
        except OSError:  # another process converted it meanwhile
            if not (out / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class Ct2Model:
    """A converted model loaded by ``ctranslate2.Translator``; what generate_summaries runs for
    ``engine='ctranslate2'``."""

    def __init__(self, translator: Any, tokenizer: Any, device: str, dtype: str, forced_eos: bool = False,
                 config: Any = None):
        self.translator = translator
        #: the model's transformers config (generation checks its positions, vocabulary and memory)
        self.config = config
        self.tokenizer = tokenizer
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
        return cls(translator, tokenizer, device, dtype, forced_eos=forced, config=read_config(Path(model_dir)))

    def generate_ids(self, batch: list[list[int]], decoding: dict) -> list[list[int]]:
        """Token ids of each summary (start token and EOS not included) for ``batch`` of source
        token ids, with the options of :data:`summprune.config.DECODING_DEFAULTS`."""
        tok = self.tokenizer
        source = [tok.convert_ids_to_tokens(ids) for ids in batch]
        res = self.translator.translate_batch(
            source, beam_size=decoding["num_beams"],
            max_decoding_length=decoding["max_length"] - (2 if self.forced_eos else 1),
            min_decoding_length=decoding["min_new_tokens"], no_repeat_ngram_size=decoding["no_repeat_ngram_size"],
            repetition_penalty=decoding["repetition_penalty"], length_penalty=decoding["length_penalty"],
            max_batch_size=len(batch), num_hypotheses=1, return_scores=False,
            max_input_length=0)  # the tokenizer truncated already; CTranslate2's default cuts at 1024
        return [tok.convert_tokens_to_ids(r.hypotheses[0]) for r in res]

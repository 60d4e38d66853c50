"""Batched summary generation: length-sorted batches, results in ID order, resumable callbacks.

The default path (``dtype="fp32"``, greedy) gives the same tokens as the course's reference,
``Seq2SeqTrainer.predict`` with ``predict_with_generate=True, generation_max_length=128``: that
passes ``max_length=128`` to ``model.generate``, which for an encoder-decoder counts the decoder
start token, so a summary has at most 127 new tokens. ``max_length`` here means the same thing.

It is faster than the reference because it batches more documents per ``generate`` call (each
decoder step reads every decoder weight and the 32k-row output matrix once per batch, so more
rows per read is most of the gain), does not run ``predict``'s extra loss forward pass (the
encoder once more per batch, when the test set carries labels), sorts documents by tokenized
length so batches carry little padding, and runs under ``torch.inference_mode``.
benchmarks/generate_speed.py measures both sides and checks that the outputs are identical.

Fast paths trade exactness for speed and are opt-in: ``dtype="bf16"`` (a bfloat16 copy of the
model; on CPU its decoder uses eager attention), ``"fp16"`` (GPU only: a float16 copy) and
``"int8"`` (CPU only: dynamic int8 quantization of every ``nn.Linear`` on a copy of the model).
Their summaries can differ from fp32 ones; the benchmark prints how often. On CPU, bf16 autocast
was measured and rejected: it halves encoder time but makes each decoder step slower than fp32
(per-call casts), while a bf16 copy is faster in both.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("fp32", "bf16", "fp16", "int8")


class Engine:
    """A generation engine: ``check(device, dtype)`` returns the device it runs on or raises
    ValueError before anything is loaded; ``load(model_dir, tokenizer, device=, dtype=, threads=,
    log=)`` returns a model :func:`generate_summaries` takes; ``available()``: whether it is
    installed. A new engine is one subclass and one :func:`register_engine` line."""

    name: str = ""

    def available(self) -> bool:
        return True

    def check(self, device: torch.device, dtype: str) -> torch.device:
        raise NotImplementedError

    def load(self, model_dir, tokenizer, *, device: torch.device, dtype: str, threads: int | None = None,
             log: Callable[[str], None] = print):
        raise NotImplementedError


class TorchEngine(Engine):
    """transformers' ``generate`` on the loaded model: the exact reference."""

    name = "torch"

    def check(self, device, dtype):
        return check_dtype(device, dtype)

    def load(self, model_dir, tokenizer, *, device, dtype, threads=None, log=print):
        from .export import load_model

        return load_model(model_dir)  # generate_summaries moves it to device and dtype


class Ct2Engine(Engine):
    """CTranslate2 (:mod:`summprune.ct2`): the model converted once (cached), fp32 or int8 on CPU."""

    name = "ctranslate2"

    def available(self):
        try:
            import ctranslate2  # noqa: F401
        except ImportError:
            return False
        return True

    def check(self, device, dtype):
        from .ct2 import check_dtype as ct2_check_dtype

        ct2_check_dtype(device.type, dtype)
        return device

    def load(self, model_dir, tokenizer, *, device, dtype, threads=None, log=print):
        from .ct2 import Ct2Model

        return Ct2Model.from_dir(model_dir, tokenizer, device=str(device), dtype=dtype, threads=threads, log=log)


#: Generation engines by name; ``--engine`` also takes 'auto' (:func:`choose_engine`).
ENGINES: dict[str, Engine] = {}


def register_engine(engine: Engine) -> Engine:
    ENGINES[engine.name] = engine
    return engine


register_engine(TorchEngine())
register_engine(Ct2Engine())
#: What ``--engine`` accepts.
ENGINE_CHOICES = ("auto", *ENGINES)

from .config import DECODING_DEFAULTS, check_decoding  # noqa: E402  (torch-free, shared with config validation)


def choose_engine(engine: str, device_type: str, num_beams: int, dtype: str) -> tuple[str, str]:
    """``(engine, why)`` for ``--engine``: 'auto' is CTranslate2 for beam search on a CPU where the
    package is installed and runs ``dtype`` there (fp32, int8), else torch. Beams are where the
    engines differ most (4 beams, no-repeat 3, t5-small shape on 2 CPU cores: 8.78 s/doc torch,
    1.80 CTranslate2 fp32; docs/results/generate_speed), and where CTranslate2's summaries are not
    transformers' token for token (its search stops by its own rule): the course scores of trained
    models agreed within 0.0022 there. Greedy stays on torch, the exact reference (CTranslate2
    greedy fp32 gives the same tokens, 1.17x faster); a GPU stays on torch."""
    if engine != "auto":
        return engine, "asked for"
    if num_beams <= 1:
        return "torch", "greedy decoding: torch is the exact reference"
    if device_type != "cpu":
        return "torch", f"beam search on {device_type}"
    if dtype not in ("fp32", "int8"):
        return "torch", f"--dtype {dtype} runs on torch"
    if not ENGINES["ctranslate2"].available():
        return "torch", "the ctranslate2 package is not installed"
    return "ctranslate2", ("beam search on a CPU: several times faster than torch; summaries may differ "
                           "slightly from transformers' beam search (--engine torch for those)")


def load_engine(engine: str, model_dir, tokenizer, *, device: torch.device, dtype: str, threads: int | None = None,
                log: Callable[[str], None] = print, fallback: bool = False):
    """``(model, engine)``: ``model_dir`` loaded by ``engine`` for :func:`generate_summaries`.

    A conversion or load that fails in an engine other than torch (CTranslate2's converters
    raise many kinds of errors on a model they do not handle) is, with ``fallback`` (what
    ``--engine auto`` chose), one ``log`` line saying why and the model loaded by torch instead;
    without it (the engine was asked for), a ValueError naming ``--engine torch``. Torch's own
    errors are the caller's as they are."""
    if engine == "torch":
        return ENGINES[engine].load(model_dir, tokenizer, device=device, dtype=dtype, threads=threads, log=log), engine
    try:
        return ENGINES[engine].load(model_dir, tokenizer, device=device, dtype=dtype, threads=threads, log=log), engine
    except Exception as e:  # noqa: BLE001  (anything the third-party converter or runtime raises)
        reason = (str(e).strip().splitlines() or [""])[0][:300]
        reason = f"{type(e).__name__}: {reason}" if reason else type(e).__name__
        if not fallback:
            raise ValueError(f"the {engine} engine cannot convert or load {model_dir} ({reason}); "
                             f"--engine torch runs the model with transformers") from e
        device = ENGINES["torch"].check(device, dtype)
        log(f"engine: torch (the {engine} engine cannot convert or load this model: {reason})")
        return ENGINES["torch"].load(model_dir, tokenizer, device=device, dtype=dtype, threads=threads, log=log), "torch"


def decoding_from_generation_config(path) -> dict:
    """The decoding options a model directory's ``generation_config.json`` sets (only those
    present in the file; ``max_new_tokens`` N is read as ``max_length`` N + 1, and wins over
    ``max_length`` as in transformers). ``{}`` if the
    file is absent; ValueError naming the file if it is not a JSON object."""
    import json
    from pathlib import Path

    f = Path(path)
    if f.is_dir():
        f = f / "generation_config.json"
    if not f.is_file():
        return {}
    try:
        raw = json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{f}: not a JSON object")
    out = {k: raw[k] for k in DECODING_DEFAULTS if raw.get(k) is not None}
    if raw.get("max_new_tokens") is not None:  # transformers gives it priority over max_length
        out["max_length"] = raw["max_new_tokens"] + 1 if isinstance(raw["max_new_tokens"], int) else raw["max_new_tokens"]
    return out


def set_decoding(generation_config, decoding: dict) -> None:
    """Write ``decoding`` (checked) into a ``GenerationConfig`` so that the exported
    ``generation_config.json`` ships it: ``max_length`` always, the others where they differ
    from off (transformers refuses to save, e.g., a length_penalty without beams)."""
    d = check_decoding(decoding)
    generation_config.max_length = d["max_length"]
    generation_config.max_new_tokens = None
    for k in ("num_beams", "no_repeat_ngram_size", "repetition_penalty", "length_penalty", "min_new_tokens"):
        setattr(generation_config, k, d[k] if d[k] != DECODING_DEFAULTS[k] else None)


#: Bytes of one cached value (fp32; the estimate's unit whatever the dtype: an upper bound there)
_VALUE_BYTES = 4


def generation_bytes(config, *, rows: int, max_length: int, source_length: int) -> int:
    """A lower estimate of the memory one ``generate`` call takes for ``rows`` decoder rows
    (batch x beams) of ``max_length`` positions reading ``source_length`` input tokens: the
    self- and cross-attention key/value caches of every decoder layer, the encoder output
    copied per beam and one row of logits per decoder row. What the family's
    ``decoder_dims`` gives sets the widths (fp32 values)."""
    from .models import family_of

    layers, kv_width, hidden = family_of(config).decoder_dims(config)
    per_row = (2 * layers * kv_width * (max_length + source_length)  # self- and cross-attention caches
               + hidden * source_length  # the encoder output, one copy per beam
               + int(config.vocab_size))  # the next token's logits
    return rows * per_row * _VALUE_BYTES


def check_generation(config, *, batch_size: int, num_beams: int, max_length: int, source_length: int,
                     where: str = "") -> None:
    """ValueError (naming ``where``, the options that ask for it) before anything is allocated
    when ``max_length`` exceeds the decoder positions of the model's family, or when batch x
    beams x length (:func:`generation_bytes`) exceeds the memory budget
    (:mod:`summprune.limits`; ``--num-beams 1000000`` had torch ask for 16.4 GB, then a raw
    traceback)."""
    from .limits import check_memory
    from .models import family_of

    fam = family_of(config)
    limit = fam.max_target_positions(config)
    if limit is not None and max_length > limit:
        raise ValueError(f"{where + ': ' if where else ''}max_length={max_length}: the model's decoder has "
                         f"{limit} positions (config.json max_position_embeddings), so a summary's decoder "
                         f"sequence, start token included, holds at most {limit}; use a max_length <= {limit}")
    n = generation_bytes(config, rows=batch_size * num_beams, max_length=max_length, source_length=source_length)
    check_memory(n, f"generating {batch_size} document(s) at a time x {num_beams} beam(s) x max_length "
                    f"{max_length} ({source_length} input tokens)", where)


def clean_prediction(s: str) -> str:
    """The course CSV format: commas become periods, line breaks become spaces."""
    return s.replace(",", ".").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available to this torch "
                             f"({torch.__version__}); use device 'cpu' or 'auto'")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)} (or cuda:N)")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 matmuls natively (AVX512-BF16/AMX); else bf16 is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_dtype(device: str | torch.device, dtype: str) -> torch.device:
    """The resolved device, or ValueError if ``dtype`` is unknown or does not run there."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "int8" and dev.type != "cpu":
        raise ValueError("dtype 'int8' (dynamic quantization) runs on CPU only; use device 'cpu', "
                         "or fp16/bf16 on a GPU")
    if dtype == "fp16" and dev.type == "cpu":
        raise ValueError("dtype 'fp16' is a GPU path; on CPU use 'bf16' or 'int8'")
    return dev


def prepare_model(model: nn.Module, device: str | torch.device = "cpu", dtype: str = "fp32") -> nn.Module:
    """The model to run for ``device``/``dtype``.

    fp32 moves ``model`` itself to ``device``; the other dtypes work on a copy so the caller's
    model keeps its weights (e.g. a pipeline that evaluates and then trains on).
    """
    dev = check_dtype(device, dtype)
    on_cpu = dev.type == "cpu"
    if dtype == "fp32":
        return model.to(dev)
    if dtype == "int8":
        return quantize_int8(model)
    half = torch.float16 if dtype == "fp16" else torch.bfloat16
    run_model = copy.deepcopy(model).to(dev, dtype=half)
    if on_cpu:
        if not cpu_has_native_bf16():
            warnings.warn("this CPU has no native bfloat16 support: dtype 'bf16' will be emulated "
                          "and probably slower than fp32", stacklevel=2)
        # torch's CPU flash-attention kernel is slow in bf16 for one query row (each decoder
        # step): eager attention (two bf16 matmuls) is about 2x faster there; the encoder
        # keeps SDPA, which is the faster one for full sequences.
        decoder = getattr(run_model, "decoder", None)
        if decoder is not None and hasattr(decoder, "set_attn_implementation"):
            decoder.set_attn_implementation("eager")
    return run_model


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` dynamically quantized to int8 (CPU).

    ``torch.ao.quantization.quantize_dynamic`` is deprecated in favour of torchao but is still
    shipped (torch 2.13) and needs no extra dependency; its deprecation warning is silenced here.
    """
    quantize_dynamic = getattr(getattr(torch, "ao", None), "quantization", None)
    quantize_dynamic = getattr(quantize_dynamic, "quantize_dynamic", None)
    if quantize_dynamic is None:
        raise RuntimeError(f"dtype 'int8' needs torch.ao.quantization.quantize_dynamic, which torch "
                           f"{torch.__version__} no longer has; use dtype 'bf16' or 'fp32'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8, inplace=True)


def _pad_batch(seqs: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` (what DataCollatorForSeq2Seq builds)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, : len(s)] = 1
    return ids.to(device), mask.to(device)


def generate_summaries(model, tokenizer, texts: list[str], *, prefix: str = "summarize: ",
                       max_source_length: int = 1024, max_length: int = 128, num_beams: int = 1,
                       batch_size: int = 16, device: str | torch.device = "cpu", dtype: str = "fp32",
                       min_new_tokens: int | None = None, no_repeat_ngram_size: int = 0,
                       repetition_penalty: float = 1.0, length_penalty: float = 1.0,
                       on_batch: Callable[[list[int], list[str]], None] | None = None,
                       skip_ids: Iterable[int] = (), progress: bool = True) -> dict[int, str]:
    """Summaries of ``texts`` as ``{row index: summary}`` in index order.

    Documents are tokenized as ``prefix + text`` truncated to ``max_source_length`` tokens, sorted
    longest first (the memory peak comes first, batches need little padding) and generated
    ``batch_size`` at a time with greedy search (``num_beams=1``) or beam search. ``max_length`` is
    HF ``generate``'s: the whole decoder sequence including its start token. ``min_new_tokens``
    (benchmarks) forbids EOS before that many new tokens, so with ``min_new_tokens=max_length-1``
    every summary has exactly ``max_length - 1`` tokens. ``no_repeat_ngram_size``,
    ``repetition_penalty`` and ``length_penalty`` are transformers' (0 / 1.0 = off). Every
    decoding option is passed explicitly, so the model's own ``generation_config`` (its
    ``max_new_tokens``, say) cannot change what was asked for; callers that want the model
    directory's decoding read it with :func:`decoding_from_generation_config`.

    ``model`` is a torch T5 or a :class:`summprune.ct2.Ct2Model` (the CTranslate2 engine, which
    has its own dtype; ``device``/``dtype`` here are the torch engine's).

    ``skip_ids``: row indices not to generate (already done); they are absent from the result.
    ``on_batch(ids, summaries)`` runs after every batch (raw summaries, not cleaned), so a caller
    can save progress; an exception from it (or Ctrl-C) stops generation after that batch.
    """
    decoding = check_decoding({"max_length": max_length, "num_beams": num_beams,
                               "no_repeat_ngram_size": no_repeat_ngram_size,
                               "repetition_penalty": repetition_penalty, "length_penalty": length_penalty,
                               "min_new_tokens": min_new_tokens or 0})
    if batch_size < 1 or max_source_length < 1:
        raise ValueError("batch_size and max_source_length must be >= 1")
    skip = set(skip_ids)
    todo = [i for i in range(len(texts)) if i not in skip]
    bar = tqdm(total=len(texts), initial=len(texts) - len(todo), unit="doc", desc="generate",
               disable=not progress, dynamic_ncols=True)
    if not todo:
        bar.close()
        return {}
    encoded = tokenizer([prefix + texts[i] for i in todo], max_length=max_source_length,
                        truncation=True)["input_ids"]
    order = sorted(range(len(todo)), key=lambda k: (-len(encoded[k]), todo[k]))
    config = getattr(model, "config", None)
    if config is not None:  # before anything of the generation is allocated
        from .io.hf import check_vocabulary

        check_vocabulary(1 + max((max(e) for e in encoded if e), default=-1), config, "the documents' token ids")
        check_generation(config, batch_size=min(batch_size, len(todo)), num_beams=decoding["num_beams"],
                         max_length=decoding["max_length"], source_length=max(len(e) for e in encoded))
    ct2 = not isinstance(model, nn.Module)
    if ct2:
        run_model = dev = None
        was_training = False
    else:
        dev = resolve_device(device) if not isinstance(device, torch.device) else device
        run_model = prepare_model(model, dev, dtype)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.pad_token_id
        was_training = run_model.training
        run_model.eval()
    # Explicit values, not a GenerationConfig with None for "off": generate fills a None from the
    # model's own generation_config, which may set beams or max_new_tokens of its own.
    gen_kwargs = {**decoding, "max_new_tokens": None, "do_sample": False, "use_cache": True}

    results: dict[int, str] = {}
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                if ct2:
                    out = model.generate_ids([encoded[k] for k in rows], decoding)
                else:
                    input_ids, attention_mask = _pad_batch([encoded[k] for k in rows], pad_id, dev)
                    out = run_model.generate(input_ids=input_ids, attention_mask=attention_mask, **gen_kwargs)
                summaries = tokenizer.batch_decode(out, skip_special_tokens=True)
                ids = [todo[k] for k in rows]
                results.update(zip(ids, summaries))
                if on_batch is not None:
                    on_batch(ids, summaries)
                bar.update(len(rows))
    finally:
        bar.close()
        if was_training:
            run_model.train()
    return {i: results[i] for i in sorted(results)}

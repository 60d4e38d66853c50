"""``summprune plan``: which structured cut meets a speed, latency or size target on *this* machine.

Speed depends on the engine, its dtype, the threads, the beams and the length of the user's
documents, and timing a shape needs no training: a model of that shape with random weights
generates exactly as many tokens, through exactly the same code, as a trained one when the output
length is forced. So the planner builds random models of the dense shape and of candidate cuts
(decoder depth, encoder depth, FFN width, heads where the family can cut them, a trimmed
vocabulary), times each on a sample of the user's documents with the engine the user runs
(``summprune.generate`` / ``summprune.ct2``), all in one run, and writes a ``prune`` config
(``[prune.structured]``) for the smallest cut that meets the target.

What "smallest cut" means: of the candidates that meet the target, the one keeping the most
parameters outside the embedding and output projection (structural cuts cost quality; trimming
the vocabulary to the tokens a domain uses does not, on text of that domain), then the one with
the full vocabulary (no export-time step needed), then the fastest.

Timing order: the dense shape first, then each single-axis cut, then the rest in the order a
simple cost model (latency = a + b * multiply-adds per document, fitted by least squares to the
shapes timed so far) says is most useful: those predicted to meet the target, most parameters
first, then the others, fastest first. The model only orders the work; every latency shown is
measured. When the time budget is spent no new shape is started, and the untimed ones are named.

The dense model is timed first and once more at the end (the load's drift over the run); the
speed-ups are against the faster of the two. Timings are cached per shape (:class:`TimingCache`),
keyed by the machine (CPU model, cores, threads), engine, dtype, beams, batch size, output
lengths, the sampled documents' token ids, package versions and the shape; each record keeps the
dense latency of the run that measured it, so every speed-up is against a dense model timed in the
same run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

#: Bumped when what a timing record means changes (part of every cache key).
PLAN_VERSION = 1
#: What ``--target`` takes: ``kind=value``.
TARGET_KINDS = {"speedup": "times faster than the dense model on the same engine",
                "latency_s": "seconds per document at most",
                "size_mb": "weights of at most this many MB (10^6 bytes) at the chosen dtype"}
ENGINES = ("torch", "ctranslate2")
DTYPES = ("fp32", "int8")
OUTPUT_LENGTHS = ("forced", "summaries")
#: the seed of every random model (the weights do not change the time; the shape does)
SEED = 0
#: a timing whose threads were busy less than this share of its wall time is flagged: other
#: processes had the cores (the benchmarks' rule)
BUSY = 0.85


class PlanError(ValueError):
    """Bad input to the planner: the message names the option or file."""


# ----------------------------------------------------------------------------- target


def parse_target(text: str) -> tuple[str, float]:
    """``"speedup=3"`` -> ``("speedup", 3.0)``; PlanError naming ``--target`` otherwise."""
    kind, sep, value = str(text).partition("=")
    kind = kind.strip()
    if not sep or kind not in TARGET_KINDS:
        raise PlanError(f"--target {text!r}: expected KIND=VALUE with KIND one of "
                        + ", ".join(f"{k} ({v})" for k, v in TARGET_KINDS.items()) + ", e.g. --target speedup=3")
    try:
        v = float(value)
    except ValueError:
        raise PlanError(f"--target {text!r}: {value.strip()!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise PlanError(f"--target {text!r}: the value must be a positive number")
    return kind, v


def meets(target: tuple[str, float], *, speedup: float | None, latency: float | None, size_mb: float) -> bool | None:
    """Whether a shape meets ``target``; None where what it needs was not measured."""
    kind, v = target
    if kind == "size_mb":
        return size_mb <= v
    if kind == "speedup":
        return None if speedup is None else speedup >= v
    return None if latency is None else latency <= v


# ----------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Cut:
    """One candidate, as ``[prune.structured]`` says it: blocks kept, fractions kept, and the
    vocabulary rows kept (None: all)."""

    encoder_layers: int
    decoder_layers: int
    ffn_keep: float = 1.0
    heads_keep: float = 1.0
    vocab_size: int | None = None

    def axes(self, dense: "Cut") -> list[str]:
        """The names of the axes on which this cut differs from ``dense``."""
        return [k for k in ("decoder_layers", "encoder_layers", "ffn_keep", "heads_keep", "vocab_size")
                if getattr(self, k) != getattr(dense, k)]

    def name(self, dense: "Cut") -> str:
        parts = []
        if self.encoder_layers != dense.encoder_layers:
            parts.append(f"enc{self.encoder_layers}")
        if self.decoder_layers != dense.decoder_layers:
            parts.append(f"dec{self.decoder_layers}")
        if self.ffn_keep != 1.0:
            parts.append(f"ffn{round(self.ffn_keep * 100)}")
        if self.heads_keep != 1.0:
            parts.append(f"heads{round(self.heads_keep * 100)}")
        if self.vocab_size is not None:
            parts.append(f"vocab{self.vocab_size}")
        return "_".join(parts) or "dense"


def structure(family):
    if family.structure is None:
        from .models import supported_model_types, family_of

        able = sorted(t for t in supported_model_types() if family_of(t).structure is not None)
        raise PlanError(f"the {family.name} family has no structured cuts; plan supports {', '.join(able)}")
    return family.structure


def dense_cut(config, family) -> Cut:
    st = structure(family)
    return Cut(int(getattr(config, st.layers["encoder"])), int(getattr(config, st.layers["decoder"])))


def candidate_config(dense_config, family, cut: Cut):
    """The config of ``cut`` of the dense model: what ``[prune.structured]`` with the same keys
    builds (one FFN width and one head count per stack, :func:`summprune.methods.structured.keep_count`),
    with ``vocab_size`` rows of the embedding where the vocabulary is trimmed."""
    import copy

    from .methods.structured import keep_count

    st = structure(family)
    cfg = copy.deepcopy(dense_config)
    for stack, n in (("encoder", cut.encoder_layers), ("decoder", cut.decoder_layers)):
        setattr(cfg, st.layers[stack], n)
        key = st.ffn_dim[stack]
        setattr(cfg, key, keep_count(int(getattr(dense_config, key)), cut.ffn_keep, "ffn_keep"))
    if cut.heads_keep != 1.0:
        for key in set(st.heads_key.values()):
            setattr(cfg, key, keep_count(int(getattr(dense_config, key)), cut.heads_keep, "heads_keep"))
    if cut.vocab_size is not None:
        cfg.vocab_size = cut.vocab_size
    return cfg


def why_not_loadable(engine: str, family, dense: Cut, cut: Cut) -> str | None:
    """Why ``engine`` cannot run ``cut`` (checked before anything is built), or None. Every cut
    here is uniform (one FFN width and one head count per stack), what CTranslate2's converters
    need; torch's generate in transformers 5 sizes its cache by the encoder's block count."""
    st = structure(family)
    if cut.encoder_layers < cut.decoder_layers:
        return ("fewer encoder than decoder blocks: transformers 5 sizes the generation cache by the encoder's "
                "count (and [prune.structured] refuses it)")
    if cut.heads_keep != 1.0 and not st.heads:
        return f"the {family.name} family's heads cannot be cut (head size = d_model / heads)"
    if not (1 <= cut.encoder_layers <= dense.encoder_layers and 1 <= cut.decoder_layers <= dense.decoder_layers):
        return (f"blocks outside 1..{dense.encoder_layers} (encoder) / 1..{dense.decoder_layers} (decoder), "
                "what the dense model has")
    return None


def describe_config(config, family) -> str:
    """'6+6 L, d_ff 2048, 8 h, vocab 32128'."""
    st = structure(family)
    ffn = sorted({int(getattr(config, st.ffn_dim[s])) for s in ("encoder", "decoder")})
    parts = [f"{getattr(config, st.layers['encoder'])}+{getattr(config, st.layers['decoder'])} L",
             "d_ff " + "/".join(map(str, ffn))]
    if st.heads:
        parts.append(f"{getattr(config, st.heads_key['encoder'])} h")
    parts.append(f"vocab {config.vocab_size}")
    return ", ".join(parts)


def _unique_tensors(model) -> dict[str, Any]:
    seen: set[int] = set()
    out = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:
            seen.add(id(t))
            out[name] = t
    return out


def weight_bytes(model, dtype: str) -> int:
    """Bytes of ``model``'s weights at ``dtype``, each distinct tensor once (a tied embedding
    once): fp32 4 bytes a value; int8 as the compact int8 export stores them (every 2-D weight
    matrix of at least :data:`summprune.io.compact.INT8_MIN_NUMEL` values that the family does
    not exempt as int8 plus one fp32 scale per row, the rest fp32; CTranslate2's int8 quantizes
    matrices per row the same way). Shapes only: ``model`` may be on the meta device."""
    import re

    from .io.compact import INT8_MIN_NUMEL
    from .models import family_of

    exempt = family_of(model).int8_exempt
    total = 0
    for name, t in _unique_tensors(model).items():
        n = t.numel()
        quant = (dtype == "int8" and t.dim() == 2 and n >= INT8_MIN_NUMEL and name.endswith(".weight")
                 and not any(re.search(rx, name) for rx in exempt))
        total += n + 4 * t.shape[0] if quant else 4 * n
    return total


def param_counts(model) -> tuple[int, int]:
    """``(parameters, parameters outside the embedding and output projection)``, each distinct
    tensor once (:func:`summprune.sparsity.dense_param_count`'s rule for a tied output)."""
    from . import sparsity as S

    total = S.dense_param_count(model)
    vocab_ids = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    if head is not None:
        vocab_ids.add(id(head.weight))
    seen: set[int] = set()
    vocab = 0
    for p in model.parameters():
        if id(p) in vocab_ids and id(p) not in seen:
            seen.add(id(p))
            vocab += p.numel()
    if head is not None and head.weight is not model.get_input_embeddings().weight:
        from .models import family_of

        if family_of(model).native_tied(model.config):  # dense_param_count did not count it
            vocab -= head.weight.numel()
    return total, total - vocab


def multiply_adds(config, family, *, source_lengths: list[int], new_tokens: list[int], beams: int) -> float:
    """Multiply-adds per document of generating ``new_tokens`` from ``source_lengths`` tokens (the
    cost model's one input: it orders the timing, it is never shown as a result)."""
    st = structure(family)
    d = int(config.d_model)
    heads = int(getattr(config, st.heads_key["decoder"]))
    inner = heads * (int(st.attention.head_size(config)) if st.attention is not None else d // max(heads, 1))
    ffn_mats = 3 if getattr(config, "is_gated_act", False) else 2
    enc_l, dec_l = int(getattr(config, st.layers["encoder"])), int(getattr(config, st.layers["decoder"]))
    ff_e, ff_d = int(getattr(config, st.ffn_dim["encoder"])), int(getattr(config, st.ffn_dim["decoder"]))
    total = 0.0
    for L, T in zip(source_lengths, new_tokens):
        enc = enc_l * L * (4 * d * inner + ffn_mats * d * ff_e + 2 * L * inner)
        cross_kv = dec_l * L * 2 * d * inner
        step = dec_l * (6 * d * inner + ffn_mats * d * ff_d + 2 * (T / 2) * inner + 2 * L * inner) + d * config.vocab_size
        total += enc + beams * (cross_kv + T * step)
    return total / max(len(source_lengths), 1)


def grid_cuts(dense: Cut, family, *, decoder_layers: list[int] | None = None,
              encoder_layers: list[int] | None = None, ffn_keep: list[float] | None = None,
              heads_keep: list[float] | None = None, vocab_sizes: list[int | None] | None = None) -> list[Cut]:
    """Every combination of the axes' values (defaults: decoder n, n/2, n/3 blocks; encoder n,
    2n/3; FFN 1, 0.5, 0.25; heads 1, 0.5 where the family cuts them; the full vocabulary), dense
    first, duplicates and out-of-range values dropped. Whether an engine runs each is
    :func:`why_not_loadable`'s."""
    st = structure(family)
    n_e, n_d = dense.encoder_layers, dense.decoder_layers
    dec = decoder_layers or [n_d, max(1, round(n_d / 2)), max(1, round(n_d / 3))]
    enc = encoder_layers or [n_e, max(1, round(2 * n_e / 3))]
    ffn = ffn_keep or [1.0, 0.5, 0.25]
    heads = heads_keep or ([1.0, 0.5] if st.heads else [1.0])
    vocab = vocab_sizes or [None]
    out = [dense]
    for e in dict.fromkeys(enc):
        for d in dict.fromkeys(dec):
            for f in dict.fromkeys(ffn):
                for h in dict.fromkeys(heads):
                    for v in dict.fromkeys(vocab):
                        c = Cut(e, d, float(f), float(h), v)
                        if c not in out:
                            out.append(c)
    return out


# ----------------------------------------------------------------------------- documents


@dataclass
class Documents:
    """The sampled documents and what their timing needs."""

    texts: list[str]
    source_lengths: list[int]
    new_tokens: list[int]
    #: token ids of the sampled inputs (prefix, truncation): part of the cache key
    ids_digest: str
    #: all documents read: their input lengths (for the report)
    all_lengths: list[int]
    #: the token ids the documents use, with the tokenizer's special ids: what trimming keeps
    used_ids: list[int]
    source: str


def load_documents(data: str, split: str, tokenizer, *, prefix: str, max_source_length: int, docs: int,
                   output_lengths: str, max_length: int, scan: int = 2000) -> Documents:
    """Read the documents as every command reads data (:func:`summprune.data.load_split`: a
    JSONL/CSV/parquet file or a folder holding ``<split>.<suffix>``), tokenize up to ``scan`` of
    them as generation does (``prefix`` + text, truncated to ``max_source_length``), and sample
    ``docs`` spread evenly over their input lengths (the shortest, the longest and the quantiles
    between). ``output_lengths='summaries'``: each sampled document generates as many tokens as
    its reference summary has (``summary`` column, at most ``max_length - 1``); 'forced':
    ``max_length - 1`` for every document."""
    from .data import DataError, load_split

    if not data:
        raise PlanError("--data: give the documents (a JSONL/CSV/parquet file or a folder with <split>.jsonl)")
    p = Path(data).expanduser()
    if not p.exists():
        raise PlanError(f"--data {data}: no such file or directory")
    cols = ("text", "summary") if output_lengths == "summaries" else ("text",)
    try:
        rows = load_split(str(p), split, columns=cols)
    except DataError as e:
        raise PlanError(f"--data {data}: {e}") from None
    except OSError as e:
        raise PlanError(f"--data {data}: cannot read it ({e.strerror or e})") from None
    texts = list(rows["text"])[:scan]
    summaries = list(rows["summary"])[:scan] if "summary" in rows.column_names else None
    enc = tokenizer([prefix + t for t in texts], max_length=max_source_length, truncation=True)["input_ids"]
    lengths = [len(e) for e in enc]
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    n = min(docs, len(texts))
    pick = sorted({order[round(k * (len(order) - 1) / max(n - 1, 1))] for k in range(n)}) if n > 1 else [order[-1]]
    used = set(i for e in enc for i in e)
    if summaries is not None:
        for ids in tokenizer(text_target=summaries, max_length=max_length, truncation=True)["input_ids"]:
            used.update(ids)
    used.update(int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
    for k in ("pad_token_id", "eos_token_id", "unk_token_id", "bos_token_id"):
        v = getattr(tokenizer, k, None)
        if v is not None:
            used.add(int(v))
    if output_lengths == "summaries":
        target = tokenizer(text_target=[summaries[i] for i in pick], add_special_tokens=False)["input_ids"]
        new = [max(1, min(len(t), max_length - 1)) for t in target]
    else:
        new = [max_length - 1] * len(pick)
    h = hashlib.sha256()
    for i in pick:
        h.update(json.dumps(enc[i]).encode())
    return Documents([texts[i] for i in pick], [lengths[i] for i in pick], new, h.hexdigest()[:24], lengths,
                     sorted(used), str(p))


class TrimmedTokenizer:
    """The tokenizer as a model of a trimmed vocabulary sees it: ids mapped to their rank among
    ``kept`` (sorted), what trimming to those tokens does, so the inputs keep their lengths.
    Decoding (of random output) goes through the original tokenizer; only its cost matters."""

    def __init__(self, tokenizer, kept: list[int]):
        self._tok = tokenizer
        self._map = {old: new for new, old in enumerate(kept)}
        unk = getattr(tokenizer, "unk_token_id", None)
        self._unk = self._map.get(unk, 0) if unk is not None else 0

    def __call__(self, *args, **kw):
        enc = self._tok(*args, **kw)
        enc["input_ids"] = [[self._map.get(i, self._unk) for i in ids] for ids in enc["input_ids"]]
        return enc

    @property
    def pad_token_id(self):
        pad = self._tok.pad_token_id
        return None if pad is None else self._map.get(pad, 0)

    def __getattr__(self, name):
        return getattr(self._tok, name)


# ----------------------------------------------------------------------------- timing cache


def machine() -> dict:
    """What identifies this machine's speed: CPU model, logical cores, OS."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu or platform.machine(), "cores": os.cpu_count(), "system": platform.system()}


def versions(engine: str) -> dict:
    import torch
    import transformers

    from . import __version__

    v = {"summprune": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
         "plan": PLAN_VERSION}
    if engine == "ctranslate2":
        from .ct2 import CONVERSION_VERSION, import_ctranslate2

        v["ctranslate2"] = import_ctranslate2().__version__
        v["conversion"] = CONVERSION_VERSION
    return v


class TimingCache:
    """One JSON file per timing record under ``root``, named by the sha256 of its key; written
    atomically. ``root=None``: no cache (``--no-cache``)."""

    def __init__(self, root: Path | None):
        self.root = root

    @staticmethod
    def key(settings: dict, shape: dict) -> str:
        blob = json.dumps({"settings": settings, "shape": shape}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def get(self, key: str) -> dict | None:
        if self.root is None:
            return None
        f = self.root / f"{key}.json"
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # absent, or unreadable: timed again (and rewritten)
        ok = isinstance(rec, dict) and rec.get("key") == key and all(
            isinstance(rec.get(k), (int, float)) and rec[k] > 0 for k in ("s_per_doc", "dense_s_per_doc"))
        return rec if ok else None

    def put(self, key: str, rec: dict) -> None:
        if self.root is None:
            return
        from .io.files import atomic_write_json

        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.root / f"{key}.json", {**rec, "key": key})


def shape_key(config) -> dict:
    """The config as a timing depends on it (names and versions of files left out)."""
    d = config.to_dict()
    for k in ("_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype", "_commit_hash"):
        d.pop(k, None)
    return d


# ----------------------------------------------------------------------------- timing


@dataclass
class Settings:
    engine: str
    dtype: str
    threads: int
    beams: int
    batch_size: int
    max_length: int
    max_source_length: int
    prefix: str
    output_lengths: str
    reps: int = 1


def _generate(model, tokenizer, docs: Documents, s: Settings, *, dtype: str,
              warmup: bool = False) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` ``model`` takes for ``docs`` through
    :func:`summprune.generate.generate_summaries`."""
    from .generate import generate_summaries

    common = dict(prefix=s.prefix, max_source_length=s.max_source_length, num_beams=s.beams, device="cpu",
                  dtype=dtype, progress=False)
    if warmup:  # first-call allocations, off the clock
        generate_summaries(model, tokenizer, docs.texts[:1], max_length=3, min_new_tokens=2, batch_size=1, **common)
        return 0.0, 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    if s.output_lengths == "forced":
        T = docs.new_tokens[0]
        generate_summaries(model, tokenizer, docs.texts, max_length=T + 1, min_new_tokens=T,
                           batch_size=min(s.batch_size, len(docs.texts)), **common)
    else:  # each its own length: one document per call
        for text, T in zip(docs.texts, docs.new_tokens):
            generate_summaries(model, tokenizer, [text], max_length=T + 1, min_new_tokens=T, batch_size=1, **common)
    return time.perf_counter() - t0, time.process_time() - c0


def _fastest(runs: list[tuple[float, float]], s: Settings, n_docs: int) -> tuple[float, float]:
    wall, cpu = min(runs)
    return wall / n_docs, cpu / (wall * s.threads) if wall > 0 else 0.0


def time_config(config, family, tokenizer, run_tokenizer, docs: Documents, s: Settings) -> tuple[float, float]:
    """``(seconds per document, busy)`` of a random model of ``config`` on ``s.engine``: the
    fastest of ``s.reps`` timings after a warm-up; busy = CPU time / (wall time x threads), under
    :data:`BUSY` where other processes took the threads' cores."""
    import torch

    torch.manual_seed(SEED)
    model = family.build(config).eval()
    if s.engine == "torch":
        from .generate import prepare_model

        run = prepare_model(model, "cpu", s.dtype)  # int8: quantized once, off the clock
        _generate(run, run_tokenizer, docs, s, dtype="fp32", warmup=True)
        return _fastest([_generate(run, run_tokenizer, docs, s, dtype="fp32") for _ in range(s.reps)], s,
                        len(docs.texts))
    from .ct2 import cache_root, model_key
    from .generate import load_engine

    tmp = Path(tempfile.mkdtemp(prefix="summprune-plan-"))
    entry, existed = None, True
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(str(tmp))  # the conversion's vocabulary: its first vocab_size tokens
        del model
        entry = cache_root() / model_key(tmp)
        existed = entry.exists()
        ct2_model, _ = load_engine("ctranslate2", tmp, run_tokenizer, device=torch.device("cpu"), dtype=s.dtype,
                                   threads=s.threads, log=lambda m: None)
        _generate(ct2_model, run_tokenizer, docs, s, dtype="fp32", warmup=True)
        return _fastest([_generate(ct2_model, run_tokenizer, docs, s, dtype="fp32") for _ in range(s.reps)], s,
                        len(docs.texts))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        # the conversion of a random model is of no use after its timing (hundreds of MB); one
        # that was in the cache before is left alone
        if entry is not None and not existed:
            shutil.rmtree(entry, ignore_errors=True)


# ----------------------------------------------------------------------------- quality on record


def recorded_quality(results_dir: Path | None, dense: Cut, cut: Cut) -> dict | None:
    """The quality a structured benchmark measured for ``cut``'s structure, relative to an equally
    trained dense control: the yardstick's (``base.kind == 'yardstick'``) before the synthetic
    proxy's; of several pages, the longest recovery, then the best mean. Matched on the blocks
    kept (the base has as many as the dense model here) and the FFN and head fractions; None
    where nothing measured it. The vocabulary is not part of any measurement."""
    import re

    if results_dir is None or not results_dir.is_dir():
        return None
    shape_rx = re.compile(r"^(\d+)\+(\d+) L, d_ff (\d+), (\d+) h$")
    best = None
    for f in sorted(results_dir.glob("*/results.json")):
        try:
            r = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        q = r.get("quality") if isinstance(r, dict) else None
        if not isinstance(q, dict) or not isinstance(q.get("records"), list):
            continue
        settings = q.get("settings") or {}
        if settings.get("layer_selection", "spread") != "spread":
            continue  # the config written keeps spread blocks
        kind = (r.get("base") or {}).get("kind", "proxy")
        ctrl = [x["kaggle_score"] for x in q["records"] if x.get("variant") == "dense_control"]
        m = shape_rx.match(next((x.get("shape", "") for x in q["records"] if x.get("variant") == "dense_control"), ""))
        if not ctrl or not m:
            continue
        be, bd, bff, bh = map(int, m.groups())
        if (be, bd) != (dense.encoder_layers, dense.decoder_layers):
            continue
        by_variant: dict[str, list[float]] = {}
        for x in q["records"]:
            mm = shape_rx.match(x.get("shape", ""))
            if not mm or x.get("variant") == "dense_control":
                continue
            e, d, ff, h = map(int, mm.groups())
            if (e, d) == (cut.encoder_layers, cut.decoder_layers) and ff == round(bff * cut.ffn_keep) \
                    and h == max(1, round(bh * cut.heads_keep)):
                by_variant.setdefault(x["variant"], []).append(float(x["kaggle_score"]))
        for scores in by_variant.values():
            c = sum(ctrl) / len(ctrl)
            rec = {"kind": kind, "pct": 100 * sum(scores) / len(scores) / c if c else float("nan"),
                   "min_pct": 100 * min(scores) / c if c else float("nan"), "seeds": len(scores),
                   "steps": settings.get("recovery_steps"), "page": str(f.parent)}
            rank = (kind == "yardstick", rec["steps"] or 0, rec["pct"])
            if best is None or rank > best[0]:
                best = (rank, rec)
    return best[1] if best else None


# ----------------------------------------------------------------------------- the plan


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """``(a, b)`` of latency = a + b * macs by least squares, both >= 0 (b alone through the origin
    where the line would not be)."""
    if len(points) >= 2:
        n = len(points)
        mx = sum(x for x, _ in points) / n
        my = sum(y for _, y in points) / n
        sxx = sum((x - mx) ** 2 for x, _ in points)
        if sxx > 0:
            b = sum((x - mx) * (y - my) for x, y in points) / sxx
            a = my - b * mx
            if a >= 0 and b > 0:
                return a, b
    b = sum(y for _, y in points) / max(sum(x for x, _ in points), 1e-30)
    return 0.0, b


def default_cache_dir() -> Path:
    from .io.files import cache_dir

    return cache_dir("plan")


def default_results_dir() -> Path | None:
    d = Path(__file__).resolve().parents[1] / "docs" / "results"
    return d if d.is_dir() else None


def run_plan(model_dir: str | Path, *, data: str, split: str = "test", engine: str = "torch", dtype: str = "fp32",
             threads: int = 1, beams: int = 1, batch_size: int = 16, max_length: int = 128,
             max_source_length: int = 1024, prefix: str | None = None, output_lengths: str = "forced",
             docs: int = 8, reps: int = 1, target: str = "speedup=3", budget_s: float = 540.0,
             vocab_size: int | None = None, vocab: bool = True, decoder_layers: list[int] | None = None,
             encoder_layers: list[int] | None = None, ffn_keep: list[float] | None = None, heads_keep: list[float] | None = None,
             cache: Path | None = None, results_dir: Path | None = None, progress: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Time the dense shape of ``model_dir`` and its candidate cuts; return the plan (rows,
    choice, settings). Every argument as ``summprune plan`` names it; PlanError for bad input."""
    import torch
    from tqdm.auto import tqdm

    from .io.hf import meta_model_from_config, read_config, tokenizer_files
    from .modeling import load_tokenizer
    from .models import family_of

    t_start = time.monotonic()
    tgt = parse_target(target)
    if engine not in ENGINES:
        raise PlanError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if dtype not in DTYPES:
        raise PlanError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if output_lengths not in OUTPUT_LENGTHS:
        raise PlanError(f"--output-lengths {output_lengths!r}: choose one of {', '.join(OUTPUT_LENGTHS)}")
    for name, v, lo in (("--threads", threads, 1), ("--num-beams", beams, 1), ("--batch-size", batch_size, 1),
                        ("--max-length", max_length, 2), ("--max-source-length", max_source_length, 1),
                        ("--docs", docs, 1), ("--reps", reps, 1)):
        if not isinstance(v, int) or v < lo:
            raise PlanError(f"{name} {v}: must be a whole number >= {lo}")
    if not budget_s > 0:
        raise PlanError(f"--budget-s {budget_s}: must be > 0")
    if engine == "ctranslate2":
        from .ct2 import import_ctranslate2

        try:
            import_ctranslate2()
        except ValueError as e:
            raise PlanError(f"--engine ctranslate2: {e}") from None
    d = Path(model_dir).expanduser()
    if not d.is_dir():
        raise PlanError(f"--model {model_dir}: no such directory")
    if not (d / "config.json").is_file():
        raise PlanError(f"--model {model_dir}: no config.json there; give a model directory or a folder holding "
                        "its config.json and tokenizer files")
    if not tokenizer_files(d):
        raise PlanError(f"--model {model_dir}: no tokenizer files (tokenizer.json, spiece.model, ...): the plan "
                        "measures the documents' lengths with the model's tokenizer")
    config = read_config(d)  # the family's size limits checked, as every loader does
    family = family_of(config)
    dense = dense_cut(config, family)
    tokenizer = load_tokenizer(d)
    if prefix is None:
        prefix = family.default_prefix
    documents = load_documents(data, split, tokenizer, prefix=prefix, max_source_length=max_source_length,
                               docs=docs, output_lengths=output_lengths, max_length=max_length)
    trimmed = len(documents.used_ids)
    if vocab_size is not None:
        if not 1 <= vocab_size <= config.vocab_size:
            raise PlanError(f"--vocab-size {vocab_size}: must be between 1 and the model's {config.vocab_size}")
        if vocab_size < trimmed:
            raise PlanError(f"--vocab-size {vocab_size}: the documents given use {trimmed} distinct tokens "
                            "(specials included); a trimmed vocabulary keeps at least those")
        trimmed = vocab_size
    vocab_sizes: list[int | None] = [None] + ([trimmed] if vocab and trimmed < config.vocab_size else [])
    s = Settings(engine, dtype, threads, beams, batch_size, max_length, max_source_length, prefix, output_lengths, reps)
    settings_key = {"machine": machine(), "threads": threads, "versions": versions(engine), "seed": SEED,
                    **{k: v for k, v in asdict(s).items() if k != "threads"}, "docs": documents.ids_digest,
                    "new_tokens": documents.new_tokens}
    store = TimingCache(cache)
    # the remapped inputs a trimmed model reads: the documents' tokens ranked among those kept
    kept_ids = documents.used_ids
    if vocab_size is not None and vocab_size > len(kept_ids):
        have = set(kept_ids)
        extra = [i for i in range(config.vocab_size) if i not in have][: vocab_size - len(kept_ids)]
        kept_ids = sorted(kept_ids + extra)

    rows: dict[Cut, dict] = {}
    for cut in grid_cuts(dense, family, decoder_layers=decoder_layers, encoder_layers=encoder_layers,
                         ffn_keep=ffn_keep, heads_keep=heads_keep, vocab_sizes=vocab_sizes):
        why = why_not_loadable(engine, family, dense, cut)
        if why is not None:
            if cut.axes(dense):
                rows[cut] = {"cut": cut, "skipped": why}
            continue
        try:
            cfg = candidate_config(config, family, cut)
        except ValueError as e:
            raise PlanError(f"--ffn-keep / --heads-keep: {e}") from None
        meta = meta_model_from_config(cfg, d / "config.json", what="a candidate shape")
        params, structural = param_counts(meta)
        rows[cut] = {"cut": cut, "config": cfg, "shape": describe_config(cfg, family), "params": params,
                     "structural_params": structural, "bytes": weight_bytes(meta, dtype),
                     "macs": multiply_adds(cfg, family, source_lengths=documents.source_lengths,
                                           new_tokens=documents.new_tokens, beams=beams),
                     "key": TimingCache.key(settings_key, shape_key(cfg))}
    runnable = [c for c, r in rows.items() if "skipped" not in r]
    for c in runnable:
        rec = store.get(rows[c]["key"])
        if rec is not None:
            rows[c].update(s_per_doc=rec["s_per_doc"], dense_s_per_doc=rec["dense_s_per_doc"], timed="cached",
                           when=rec.get("when"), busy=rec.get("busy"))
    todo = [c for c in runnable if "s_per_doc" not in rows[c]]
    log(f"plan: {d} ({describe_config(config, family)}), engine {engine} {dtype}, {threads} thread(s), "
        f"{beams} beam(s), target {tgt[0]}={tgt[1]:g}; {len(runnable)} shapes, {len(runnable) - len(todo)} cached")
    log(f"documents: {len(documents.all_lengths)} from {documents.source}, input tokens min "
        f"{min(documents.all_lengths)} median {sorted(documents.all_lengths)[len(documents.all_lengths) // 2]} max "
        f"{max(documents.all_lengths)}; timed on {len(documents.texts)} of them ({', '.join(map(str, documents.source_lengths))} "
        f"tokens), " + (f"{documents.new_tokens[0]} new tokens forced (max_length {max_length})"
                        if output_lengths == "forced" else "each as many new tokens as its reference summary"))

    prev_threads = torch.get_num_threads()
    stopped: list[Cut] = []
    dense_run: dict = {}
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    try:
        torch.set_num_threads(threads)
        hf_logging.disable_progress_bar()  # save/load bars of every shape: the plan's own bar says it
        if todo:
            if dense in todo:
                todo.remove(dense)
            bar = tqdm(total=len(todo) + 1, unit="shape", desc="plan", disable=not progress, dynamic_ncols=True)
            points: list[tuple[float, float]] = []

            def time_one(c: Cut) -> float:
                r = rows[c]
                run_tok = tokenizer if c.vocab_size is None else TrimmedTokenizer(tokenizer, kept_ids[: c.vocab_size])
                bar.set_postfix_str(c.name(dense))
                t0 = time.monotonic()
                try:
                    spd, r["busy"] = time_config(r["config"], family, tokenizer, run_tok, documents, s)
                except ValueError as e:  # the engine cannot convert or load it
                    r["skipped"] = f"{engine} cannot load it: {e}"
                    spd = None
                bar.update(1)
                r["took_s"] = time.monotonic() - t0
                if spd is not None:
                    points.append((r["macs"], spd))
                return spd

            dense_spd = time_one(dense)
            if dense_spd is None:
                raise PlanError(f"--model {model_dir}: the {engine} engine cannot run the dense model: "
                                f"{rows[dense]['skipped']}")
            dense_took = rows[dense]["took_s"]
            dense_run = {"s_per_doc": dense_spd}
            rows[dense].update(s_per_doc=dense_spd, dense_s_per_doc=dense_spd, timed="now")
            store.put(rows[dense]["key"], _record(rows[dense], dense_spd, dense_spd))
            single = [c for c in todo if len(c.axes(dense)) == 1]
            rest = [c for c in todo if c not in single]
            queue = list(single)
            while queue or rest:
                if not queue:
                    a, b = _fit(points)
                    for c in rest:
                        rows[c]["predicted"] = a + b * rows[c]["macs"]
                    sizes = {c: rows[c]["bytes"] / 1e6 for c in rest}

                    def promising(c):
                        p = rows[c]["predicted"]
                        return bool(meets(tgt, speedup=dense_spd / p, latency=p, size_mb=sizes[c]))
                    rest.sort(key=lambda c: (not promising(c),
                                             -rows[c]["structural_params"] if promising(c) else rows[c]["predicted"],
                                             c.vocab_size is not None))
                    queue = [rest.pop(0)]
                c = queue.pop(0)
                # a new shape is started only while two dense timings' worth of budget is left: its
                # own (no cut takes longer than the dense model) and the dense model's once more
                if time.monotonic() - t_start + 2 * dense_took > budget_s:
                    stopped = [c, *queue, *rest]
                    break
                spd = time_one(c)
                if spd is not None:
                    rows[c].update(s_per_doc=spd, dense_s_per_doc=dense_spd, timed="now")
                    store.put(rows[c]["key"], _record(rows[c], spd, dense_spd))
            if any(r.get("timed") == "now" for c, r in rows.items() if c != dense):
                # the dense model once more: the load's drift over the run, and the reference is the
                # faster of the two (a load spike during one dense timing does not inflate every speed-up)
                again, busy = time_config(rows[dense]["config"], family, tokenizer, tokenizer, documents, s)
                dense_run["again_s_per_doc"] = again
                if again < dense_spd:
                    rows[dense]["busy"] = busy
                ref = min(dense_spd, again)
                for c, r in rows.items():
                    if r.get("timed") == "now":
                        r["dense_s_per_doc"] = ref
                        if c == dense:
                            r["s_per_doc"] = ref
                        store.put(r["key"], _record(r, r["s_per_doc"], ref))
            bar.close()
    finally:
        torch.set_num_threads(prev_threads)
        if bars:
            hf_logging.enable_progress_bar()

    for c, r in rows.items():
        if "s_per_doc" in r:
            r["speedup"] = r["dense_s_per_doc"] / r["s_per_doc"]
        if "skipped" not in r:
            r["meets"] = meets(tgt, speedup=r.get("speedup"), latency=r.get("s_per_doc"), size_mb=r["bytes"] / 1e6)
            r["quality"] = recorded_quality(results_dir, dense, c) if c != dense else None
    choice = choose(rows, dense)
    return {"model": str(model_dir), "config": config, "family": family, "dense": dense, "rows": rows,
            "choice": choice, "target": tgt, "settings": s, "documents": documents, "not_timed": stopped,
            "dense_run": dense_run, "seconds": time.monotonic() - t_start, "trimmed_vocab": trimmed,
            "vocab_from": "--vocab-size" if vocab_size is not None else "documents"}


def _record(row: dict, spd: float, dense_spd: float) -> dict:
    return {"s_per_doc": spd, "dense_s_per_doc": dense_spd, "shape": row["shape"], "busy": row.get("busy"),
            "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def choose(rows: dict, dense: Cut) -> Cut | None:
    """The smallest cut that meets the target (module docstring), or None."""
    ok = [c for c, r in rows.items() if c != dense and r.get("meets")]
    if not ok:
        return None
    return min(ok, key=lambda c: (-rows[c]["structural_params"], c.vocab_size is not None,
                                  rows[c].get("s_per_doc", float("inf"))))


# ----------------------------------------------------------------------------- output


def _page(path: str) -> str:
    """A results page as ``docs/results/<name>`` where it is the checkout's, else as given."""
    p = Path(path)
    return f"docs/results/{p.name}" if p.parent.name == "results" and p.parent.parent.name == "docs" else str(p)


def _quality_cell(r: dict, cut: Cut, dense: Cut, notes: list[str]) -> str:
    if cut == dense:
        return "dense"
    q = r.get("quality")
    if not q:
        return "not measured"
    note = (f"{_page(q['page'])}: {q['seeds']} seed(s), {q['steps']} recovery steps, worst seed {q['min_pct']:.1f}% "
            f"of an equally trained dense control")
    if note not in notes:
        notes.append(note)
    label = "yardstick" if q["kind"] == "yardstick" else "proxy"
    tail = ", vocab cut not measured" if cut.vocab_size is not None else ""
    return f"{label} {q['pct']:.1f}% [{notes.index(note) + 1}]{tail}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}" if n >= 10e6 else f"{n / 1e6:.3f}"


def format_table(plan: dict) -> str:
    rows, dense, tgt = plan["rows"], plan["dense"], plan["target"]
    s: Settings = plan["settings"]
    notes: list[str] = []
    size_label = f"size MB ({s.dtype})"
    lines = [f"| shape | cut | params (M) | {size_label} | s/doc | busy | speed-up | {tgt[0]}={tgt[1]:g} | quality | "
             "timed |", "|---|---|---|---|---|---|---|---|---|---|"]
    # the shapes timed (now or before) and the chosen one; the others are named below the table
    ordered = sorted((c for c, r in rows.items() if "skipped" not in r and ("s_per_doc" in r or c == plan["choice"])),
                     key=lambda c: (c != dense, -rows[c]["params"]))
    for c in ordered:
        r = rows[c]
        m = r.get("meets")
        lines.append("| " + " | ".join([
            r["shape"], c.name(dense) + (" **<- chosen**" if c == plan["choice"] else ""),
            f"{r['params'] / 1e6:.2f}", _mb(r["bytes"]),
            f"{r['s_per_doc']:.3f}" if "s_per_doc" in r else "not timed",
            "-" if r.get("busy") is None else f"{r['busy']:.0%}" + (" flagged" if r["busy"] < BUSY else ""),
            f"{r['speedup']:.2f}x" if "speedup" in r else "-",
            "yes" if m else "no" if m is False else "-",
            _quality_cell(r, c, dense, notes),
            r.get("timed", "-") if r.get("timed") != "cached" else f"cached {r.get('when') or ''}".strip()]) + " |")
    out = "\n".join(lines)
    if notes:
        out += "\n\n" + "\n".join(f"[{i}] {n}" for i, n in enumerate(notes, 1))
    by_reason: dict[str, list[str]] = {}
    for c, r in rows.items():
        if "skipped" in r:
            by_reason.setdefault(r["skipped"], []).append(c.name(dense))
    for why, names in by_reason.items():
        out += f"\n\nnot runnable on {s.engine} ({why}): {', '.join(names)}"
    if plan["not_timed"]:
        out += (f"\n\nnot timed (the time budget was spent): {len(plan['not_timed'])} shape(s): "
                + ", ".join(c.name(dense) for c in plan["not_timed"]))
    return out


def summary_lines(plan: dict) -> list[str]:
    """What the table does not say: the measurement and the choice."""
    s: Settings = plan["settings"]
    docs: Documents = plan["documents"]
    dense = plan["rows"][plan["dense"]]
    out = [f"measured: {s.engine} {s.dtype}, {s.threads} thread(s), {s.beams} beam(s), batch {s.batch_size}, "
           f"{len(docs.texts)} documents of {docs.source} ({', '.join(map(str, docs.source_lengths))} input tokens), "
           + (f"{docs.new_tokens[0]} new tokens forced (EOS masked until then, as the benchmarks do)"
              if s.output_lengths == "forced" else
              f"as many new tokens as each reference summary ({', '.join(map(str, docs.new_tokens))})")
           + f"; random weights of each shape (seed {SEED}); s/doc = wall time / documents, the fastest of {s.reps} "
           f"timing(s) per shape after a warm-up; speed-up against the dense model timed in the same run"]
    again = plan["dense_run"].get("again_s_per_doc")
    if again:
        first = plan["dense_run"]["s_per_doc"]
        out.append(f"dense: {first:.3f} s/doc at the start of this run, {again:.3f} at the end "
                   f"({100 * (again / first - 1):+.1f}%: the drift of this machine's load); the speed-ups of this "
                   f"run are against the faster, {min(first, again):.3f}")
    flagged = [c.name(plan["dense"]) for c, r in plan["rows"].items() if r.get("busy") is not None and r["busy"] < BUSY]
    if flagged:
        out.append(f"flagged: {len(flagged)} timing(s) had their threads busy under {BUSY:.0%} of the wall time (other "
                   "processes had the cores): their seconds are inflated by this machine's load, not the shape")
    if any(c.vocab_size is not None for c in plan["rows"]):
        out.append(f"vocab{plan['trimmed_vocab']}: the vocabulary trimmed to {plan['trimmed_vocab']} tokens ("
                   + ("--vocab-size" if plan["vocab_from"] == "--vocab-size" else
                      "the distinct tokens of the documents given, specials included: what trimming to them keeps")
                   + "); an export-time step, not a [prune.structured] key")
    if hasattr(os, "getloadavg"):
        out.append(f"load average now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} logical cores")
    ch = plan["choice"]
    if dense.get("meets"):
        out.append(f"the dense model itself meets {plan['target'][0]}={plan['target'][1]:g}")
    if ch is None:
        out.append(f"no shape timed meets {plan['target'][0]}={plan['target'][1]:g}: nothing written")
    else:
        out.append(f"chosen: {ch.name(plan['dense'])} ({plan['rows'][ch]['shape']}), the cut keeping the most "
                   "parameters outside the vocabulary that meets the target")
        rated = [(r["quality"]["pct"], c) for c, r in plan["rows"].items()
                 if c != plan["dense"] and r.get("meets") and r.get("quality")]
        if rated:
            pct, best = max(rated, key=lambda x: (x[0], -x[1].name(plan["dense"]).count("_")))
            if best != ch:
                q = plan["rows"][best]["quality"]
                out.append(f"of the cuts meeting the target, the best quality on record: {best.name(plan['dense'])} "
                           f"({'yardstick' if q['kind'] == 'yardstick' else 'proxy'} {pct:.1f}% of its control); "
                           f"the same command with --encoder-layers {best.encoder_layers} --decoder-layers "
                           f"{best.decoder_layers} --ffn-keep {best.ffn_keep:g} --heads-keep {best.heads_keep:g}"
                           + (" --no-vocab" if best.vocab_size is None else "") + " writes its config (from the cache)")
    return out


def config_text(plan: dict, command: str) -> str:
    """The ``prune`` config of the chosen cut: ``[prune.structured]`` with configs/structured_kd.toml's
    recovery, ``[eval]`` with the decoding timed, a header saying what was measured."""
    ch: Cut = plan["choice"]
    dense: Cut = plan["dense"]
    r = plan["rows"][ch]
    s: Settings = plan["settings"]
    meas = (f"{r['s_per_doc']:.3f} s/doc, {r['speedup']:.2f}x the dense model ({r['dense_s_per_doc']:.3f} s/doc) "
            f"on the same engine" if "s_per_doc" in r else "not timed (the target is its size)")
    q = r.get("quality")
    qual = (f"{'yardstick' if q['kind'] == 'yardstick' else 'synthetic proxy'}: {q['pct']:.1f}% of an equally "
            f"trained dense control ({q['seeds']} seeds, {q['steps']} recovery steps, {_page(q['page'])})"
            if q else "not measured")
    lines = [
        "# Written by `summprune plan`: the smallest cut measured to meet the target on the machine that ran it.",
        f"#   {command}",
        f"# target {plan['target'][0]}={plan['target'][1]:g}; shape {r['shape']} ({r['params'] / 1e6:.2f}M parameters, "
        f"{_mb(r['bytes'])} MB of weights at {s.dtype})",
        f"# speed: {meas}; {s.engine} {s.dtype}, {s.threads} thread(s), {s.beams} beam(s), random weights of the "
        "shape, " + (f"{plan['documents'].new_tokens[0]} new tokens forced" if s.output_lengths == "forced"
                     else "reference-summary lengths"),
        f"# quality on record for this structure: {qual}",
    ]
    if ch.vocab_size is not None:
        lines += [f"# vocabulary: trim to {ch.vocab_size} tokens at export (the vocabulary trimming step of issue 35,",
                  "# not a key of this config): the speed above counts it; without it the cut is "
                  f"{replace(ch, vocab_size=None).name(dense)}"]
    lines += ["#", "#   python -m summprune prune --model MODEL_DIR --config THIS_FILE --output OUT", "",
              'name = "plan"', 'output_dir = "pruned_model_plan"', ""]
    structural = replace(ch, vocab_size=None) != dense
    if structural:
        lines += ["[prune.structured]",
                  f"encoder_layers = {ch.encoder_layers}", f"decoder_layers = {ch.decoder_layers}",
                  f"ffn_keep = {ch.ffn_keep!r}", f"heads_keep = {ch.heads_keep!r}",
                  'layer_selection = "spread"', 'importance = "taylor"', "importance_batches = 16",
                  "recover_epochs = 4.0", "distill_alpha = 0.5", "distill_temperature = 2.0", ""]
    lines += ["[eval]", f"max_length = {s.max_length}", f"num_beams = {s.beams}", ""]
    return "\n".join(lines)


def write_config(plan: dict, path: str | Path, command: str) -> Path:
    """Write the chosen cut's config atomically and check that ``prune``'s loader accepts it (a
    file it refuses is not left behind)."""
    from .config import ConfigError, load_config
    from .io.files import atomic_write

    p = Path(path).expanduser()
    if p.is_dir():
        raise PlanError(f"--output {path}: is a directory; give a .toml file name")
    if not p.parent.is_dir():
        raise PlanError(f"--output {path}: the folder {p.parent} does not exist")
    text = config_text(plan, command)
    tmp = Path(tempfile.mkdtemp(prefix=".plan-", dir=p.parent))
    try:
        (tmp / "plan.toml").write_text(text, encoding="utf-8")
        try:
            load_config(tmp / "plan.toml")
        except ConfigError as e:  # a bug here, not the user's input
            raise RuntimeError(f"the config plan wrote does not load: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return atomic_write(p, text)


# ----------------------------------------------------------------------------- command line


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def add_parser(sub) -> None:
    """``python -m summprune plan``'s arguments (the CLI's one hook)."""
    import argparse

    p = sub.add_parser("plan", help="time the dense shape and candidate cuts on this machine (random weights) and "
                                    "write a prune config for the smallest cut meeting a target",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="model directory, or a folder with its config.json and tokenizer "
                                                  "files (no weights are read)")
    p.add_argument("--data", required=True, help="your documents: a JSONL/CSV/parquet file with a 'text' column, or "
                                                 "a folder with <split>.jsonl")
    p.add_argument("--split", default="test", help="the split read from a --data folder")
    p.add_argument("--engine", default="torch", choices=ENGINES, help="the engine you generate with")
    p.add_argument("--dtype", default="fp32", choices=DTYPES, help="its dtype")
    p.add_argument("--threads", type=int, default=1, help="CPU threads generation uses")
    p.add_argument("--num-beams", type=int, default=1, help="beam size (1 = greedy)")
    p.add_argument("--batch-size", type=int, default=16, help="documents per generate call")
    p.add_argument("--max-length", type=int, default=128, help="decoder max_length (start token included)")
    p.add_argument("--max-source-length", type=int, default=1024, help="input tokens kept")
    p.add_argument("--prefix", default=None, help="input prefix (default: the family's, 'summarize: ' for T5)")
    p.add_argument("--output-lengths", default="forced", choices=OUTPUT_LENGTHS,
                   help="forced: max_length - 1 new tokens for every document (EOS masked, as the benchmarks do); "
                        "summaries: as many as each document's reference summary ('summary' column)")
    p.add_argument("--docs", type=int, default=8, help="documents timed, spread over the input lengths")
    p.add_argument("--reps", type=int, default=1, help="timings per shape, the fastest kept (a loaded machine)")
    p.add_argument("--target", default="speedup=3",
                   help="speedup=X (vs dense, same engine), latency_s=X (s/doc) or size_mb=X (weights at --dtype)")
    p.add_argument("--budget-s", type=float, default=540.0, help="no new shape is started after this many seconds")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="the trimmed vocabulary to time (default: the distinct tokens of --data, specials included)")
    p.add_argument("--no-vocab", action="store_true", help="no vocabulary-trimmed candidates")
    p.add_argument("--decoder-layers", type=_ints, default=None, metavar="N,N,..", help="decoder depths to try")
    p.add_argument("--encoder-layers", type=_ints, default=None, metavar="N,N,..", help="encoder depths to try")
    p.add_argument("--ffn-keep", type=_floats, default=None, metavar="F,F,..", help="FFN fractions to try")
    p.add_argument("--heads-keep", type=_floats, default=None, metavar="F,F,..", help="head fractions to try")
    p.add_argument("--output", default="plan.toml", help="the prune config written for the chosen cut")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="timing cache (default: $SUMMPRUNE_CACHE/plan, else ~/.cache/summprune/plan)")
    p.add_argument("--no-cache", action="store_true", help="time everything again; read and write no cache")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="where measured qualities are looked up (default: the checkout's docs/results)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(fn=cli)


def cli(a) -> int:
    import transformers

    transformers.logging.set_verbosity_error()
    out = Path(a.output).expanduser()
    if out.is_dir():  # before minutes of timing
        raise PlanError(f"--output {a.output}: is a directory; give a .toml file name")
    if not out.parent.is_dir():
        raise PlanError(f"--output {a.output}: the folder {out.parent} does not exist")
    cache = None if a.no_cache else Path(a.cache).expanduser() if a.cache else default_cache_dir()
    results = Path(a.results).expanduser() if a.results else default_results_dir()

    def stop(signum, frame):
        raise KeyboardInterrupt  # the temporary model folders and conversions are removed on the way out

    main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, stop) if main_thread else None
    try:
        plan = _run(a, cache, results)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    print(format_table(plan))
    print()
    for line in summary_lines(plan):
        print(line)
    if plan["choice"] is None:
        return 3
    write_config(plan, out, a.command)
    print(f"wrote {out} (python -m summprune prune --model MODEL_DIR --config {out} --output OUT)")
    return 0


def _run(a, cache: Path | None, results: Path | None) -> dict:
    import sys

    return run_plan(a.model, data=a.data, split=a.split, engine=a.engine, dtype=a.dtype, threads=a.threads,
                    beams=a.num_beams, batch_size=a.batch_size, max_length=a.max_length,
                    max_source_length=a.max_source_length, prefix=a.prefix, output_lengths=a.output_lengths,
                    docs=a.docs, reps=a.reps, target=a.target, budget_s=a.budget_s, vocab_size=a.vocab_size,
                    vocab=not a.no_vocab,
                    decoder_layers=a.decoder_layers, encoder_layers=a.encoder_layers, ffn_keep=a.ffn_keep,
                    heads_keep=a.heads_keep, cache=cache, results_dir=results, progress=not a.no_progress,
                    log=lambda m: print(m, file=sys.stderr))

"""Typed experiment configuration.

A config is a tree of dataclasses. Every field has a default with the reason beside it, so an
experiment file under ``configs/`` holds only what differs (nanoGPT style). ``load_config`` reads
a TOML file, applies ``key=value`` overrides (``train.learning_rate=1e-4``) and validates the
result; every error names the file and the offending key.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from .registry import Registry
from .ties import TIE_MODES, TieMode  # TIE_MODES: how the lm_head group treats a tied embedding, by name

#: GROUPS: the six layer groups of the course's recipe, in the course's order. They and the
#: family names are the model-family layer's (one definition each; it imports nothing of this package).
from .models import GROUPS, family_names  # noqa: E402


#: The decoding options (transformers' names) and their values when nothing sets them: the
#: course's greedy ``max_length=128``. ``max_length`` counts the decoder start token (HF's meaning
#: for encoder-decoders); 0 / 1.0 mean "off" for the others.
DECODING_DEFAULTS: dict[str, int | float] = {
    "max_length": 128,
    "num_beams": 1,
    "no_repeat_ngram_size": 0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "min_new_tokens": 0,
}


#: The smallest value of the integer decoding options (0 otherwise): max_length counts the decoder
#: start token, and transformers raises a ValueError for max_length=1.
_DECODING_MIN = {"max_length": 2, "num_beams": 1}


def check_decoding(decoding: dict, where: str = "decoding") -> dict:
    """``decoding`` completed from :data:`DECODING_DEFAULTS` and checked: ValueError naming
    ``where`` and the key for an unknown key or a value out of range."""
    import math

    unknown = sorted(set(decoding) - set(DECODING_DEFAULTS))
    if unknown:
        raise ValueError(f"{where}: unknown decoding option(s) {unknown}; known: {list(DECODING_DEFAULTS)}")
    d = {**DECODING_DEFAULTS, **{k: v for k, v in decoding.items() if v is not None}}
    for k in ("max_length", "num_beams", "no_repeat_ngram_size", "min_new_tokens"):
        v = d[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < _DECODING_MIN.get(k, 0):
            raise ValueError(f"{where}: {k}={v!r} must be an integer >= {_DECODING_MIN.get(k, 0)}"
                             + (" (it counts the decoder start token: 1 leaves no room for a summary)"
                                if k == "max_length" else ""))
    for k in ("repetition_penalty", "length_penalty"):
        v = d[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where}: {k}={v!r} must be a finite number")
        d[k] = float(v)
    if d["repetition_penalty"] <= 0:
        raise ValueError(f"{where}: repetition_penalty={d['repetition_penalty']} must be > 0 (1.0 = off)")
    if d["length_penalty"] != 1.0 and d["num_beams"] == 1:
        raise ValueError(f"{where}: length_penalty={d['length_penalty']} applies to beam search only; set num_beams > 1")
    if d["min_new_tokens"] > d["max_length"] - 1:
        raise ValueError(f"{where}: min_new_tokens={d['min_new_tokens']} exceeds max_length - 1 "
                         f"({d['max_length'] - 1}): max_length counts the decoder start token")
    return d


#: Cap on batch sizes and accumulation (see ``validate``).
MAX_BATCH = 1_000_000


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and key."""


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class DataConfig:
    dataset: str = _help(
        "'billsum' (Hugging Face hub), 'synthetic' (offline BillSum-like corpus), a local "
        "JSONL/CSV/parquet file with text/summary columns, or a directory holding "
        "<split>.jsonl|csv|parquet.",
        default="billsum",
    )
    train_split: str = _help("Split fine-tuning reads; validation is carved from it.", default="train")
    test_split: str = _help("Split generate_csv.py and scoring read.", default="test")
    val_size: int = _help(
        "Documents carved from the train split for validation (BillSum has no validation "
        "split); fixed seed so every run sees the same ones.",
        default=200,
    )
    max_train_samples: int | None = _help("Cap on training documents (None = all).", default=None)
    prefix: str = _help("Task prefix put before every input, the same for training and generation; 'auto' = the "
                        "model family's convention ('summarize: ' for T5, none for the others).",
                        default="auto")
    max_source_length: int = _help("Input tokens kept (t5-small was trained on 512, BillSum bills are long; the course uses 1024).", default=1024)
    max_target_length: int = _help("Summary tokens kept as labels (matches generation max_length=128).", default=128)
    synthetic_docs: int = _help("Size of the synthetic corpus when dataset='synthetic'.", default=600)
    seed: int = _help("Seed for the validation carve-out and the synthetic corpus.", default=42)


@dataclass
class ModelConfig:
    name: str = _help(
        "Hub name ('t5-small'), a local model directory, or 'tiny' (random T5 built from a "
        "config, for tests and the smoke run).",
        default="t5-small",
    )
    tokenizer: str | None = _help(
        "Hub name or directory of the tokenizer; None = same as name. With name='tiny' and "
        "None, a BPE tokenizer is trained on the fly on the training texts.",
        default=None,
    )
    tiny_d_model: int = _help("Width of the 'tiny' architecture.", default=64)
    tiny_layers: int = _help("Encoder and decoder layers of the 'tiny' architecture.", default=2)
    tiny_heads: int = _help("Attention heads of the 'tiny' architecture.", default=4)
    tiny_d_ff: int = _help("FFN width of the 'tiny' architecture.", default=128)
    tiny_vocab: int = _help("Vocabulary of the on-the-fly tokenizer for 'tiny'.", default=2000)
    tiny_family: str = _help("Architecture family of 'tiny': t5 (t5-small's layout) or any other family "
                             "summprune.models registers (TINY_FAMILIES).", default="t5")


@dataclass
class TrainConfig:
    # The course's hyperparameters are the defaults so that the reference recipe reproduces.
    learning_rate: float = _help("Peak learning rate (course: 2e-5).", default=2e-5)
    weight_decay: float = _help("AdamW weight decay (course: 0.01).", default=0.01)
    lr_scheduler: str = _help("transformers scheduler name (course: linear).", default="linear")
    warmup_ratio: float = _help("Fraction of steps used for warm-up.", default=0.0)
    epochs: float = _help("Fine-tuning epochs before pruning (course: 4).", default=4.0)
    max_steps: int = _help("Fine-tuning only: if > 0, this many optimizer steps instead of epochs (recoveries "
                           "have their own recover_steps).", default=-1)
    batch_size: int = _help("Per-device train batch (course: 2; raise it on a GPU).", default=2)
    grad_accum: int = _help("Gradient accumulation steps.", default=1)
    eval_batch_size: int = _help("Per-device batch for loss evaluation.", default=8)
    precision: str = _help("'auto' (bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU), 'fp32', 'bf16' or 'fp16'.", default="auto")
    seed: int = _help("Training seed (course: 42).", default=42)
    logging_steps: int = _help("Log training loss every N optimizer steps.", default=50)
    num_workers: int = _help("DataLoader workers.", default=0)
    save_steps: int = _help("Fine-tuning saves a Trainer checkpoint every N optimizer steps, so a killed "
                            "run resumes there (0 = no checkpoints).", default=500)
    progress_bar: bool = _help("The Trainer's progress bar (benchmarks turn it off; they log themselves).",
                               default=True)


@dataclass
class RecoveryConfig:
    """Recovery fine-tuning after a pruning step, the same keys in every section that recovers
    (``[[prune.stages]]``, ``[prune.gradual]``, ``[prune.structured]``, and any registered method):
    one definition, one validator (:func:`validate_recovery`), one function that runs it
    (``summprune.recovery.recover``)."""

    recover_epochs: float = _help("Recovery epochs after each pruning step (0 = none; used when recover_steps is 0).",
                                  default=0.0)
    recover_steps: int = _help("If > 0, recovery runs this many optimizer steps instead of epochs.", default=0)
    learning_rate: float | None = _help("Recovery learning rate (None = train.learning_rate).", default=None)
    distill_alpha: float = _help(
        "Recovery loss = alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher || student); the teacher "
        "is the model as it was before the first pruning method of the run (built once, frozen). "
        "1.0 = no distillation.",
        default=1.0,
    )
    distill_temperature: float = _help("Distillation temperature T.", default=2.0)
    distill_features: float = _help(
        "Weight of feature distillation added to the loss (0 = none): per-layer normalised MSE between "
        "the student's and the teacher's hidden states, encoder and decoder (SquareHead, Kurtic et al. "
        "2023), a student with fewer layers mapped onto evenly spaced teacher layers. Needs the teacher.",
        default=0.0)
    distill_sequences: float = _help(
        "Sequence-level distillation (Kim & Rush 2016): the share of training rows whose labels are "
        "replaced by the teacher's own summary of the document (0 = none, 1 = all; in between a seeded "
        "subset, the rest keep their references). Generated once per teacher and cached "
        "(summprune.seqkd). Needs the teacher.",
        default=0.0)
    distill_sequence_beams: int = _help("distill_sequences: beams of the teacher's summaries (1 = greedy).",
                                        default=1)

    def recovery(self) -> "RecoveryConfig":
        """Just the recovery keys of a section."""
        return RecoveryConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RecoveryConfig)})

    def recovers(self) -> bool:
        return self.recover_steps > 0 or self.recover_epochs > 0

    def distils(self) -> bool:
        """Whether the recovery objective uses the teacher (logits, features or sequences)."""
        return self.distill_alpha < 1.0 or self.distill_features > 0 or self.distill_sequences > 0

    def needs_teacher(self) -> bool:
        return self.recovers() and self.distils()


#: Families a 'tiny' model can be built in: every registered one (summprune.models).
TINY_FAMILIES = family_names()


@dataclass(frozen=True)
class Section:
    """A ``[prune.<name>]`` table (``[[prune.<name>]]`` when ``many``): its dataclass and validator
    ``validate(section, prune_config, bad)``. Methods register theirs (summprune.methods.base)."""

    name: str
    cls: type
    many: bool = False
    validate: Callable | None = None


#: Every recipe section a config may hold, by name: each method module registers its own
#: (summprune.methods.base.register). This module imports no method: the package's __init__ adds
#: the loader of the built-ins (summprune.methods, which imports torch), run when a ``[prune]``
#: table is first read or checked (summprune.registry).
SECTIONS: Registry = Registry("config section")


def register_section(name: str, cls: type, *, many: bool = False, validate: Callable | None = None) -> Section:
    """Make ``[prune.<name>]`` a known table holding ``cls`` (a dataclass)."""
    if name in ("tie_mode", "groups"):
        raise ValueError(f"{name!r} is a key of [prune] itself, not a section name")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"section {name!r}: {cls!r} is not a dataclass")
    sec = Section(name, cls, many, validate)
    SECTIONS[name] = sec
    return sec


@dataclass
class PruneConfig:
    tie_mode: str = _help(
        "'tied' (default): pruning lm_head prunes the shared embedding for every use, so the "
        "model scored, saved and counted is one; 'untie': lm_head gets its own copy and only "
        "it is pruned; 'course': mask lm_head only and leave the tied embedding dense (what "
        "the course's notebook does; its ratio then overstates compression).",
        default="tied",
    )
    groups: dict[str, str] = _help(
        "Override or add group patterns: name -> regex on module names (nn.Linear only).",
        default_factory=dict,
    )
    methods: dict[str, Any] = _help(
        "The recipe: each other key of [prune] is a method's section (stages, gradual, structured, "
        "or a registered one), in file order; structural methods run first (summprune.methods).",
        default_factory=dict,
    )

    # the built-in sections by name; their classes live with their methods (summprune.methods.*)
    @property
    def stages(self) -> list:
        """``[[prune.stages]]`` (summprune.methods.stages.StageConfig entries), [] when absent."""
        return self.methods.get("stages", [])

    @property
    def gradual(self) -> Any:
        """``[prune.gradual]`` (summprune.methods.gradual.GradualConfig) or None."""
        return self.methods.get("gradual")

    @property
    def structured(self) -> Any:
        """``[prune.structured]`` (summprune.methods.structured.StructuredConfig) or None."""
        return self.methods.get("structured")


@dataclass
class EvalConfig:
    """Decoding used for validation during a run, and written into the exported model's
    ``generation_config.json``, where generate_csv.py takes its defaults from: what a run
    validated is what it ships."""
    max_length: int = _help("Generation max_length, decoder start token included (the course scores at 128).", default=128)
    num_beams: int = _help("Beam size; 1 = greedy, the course's setting.", default=1)
    no_repeat_ngram_size: int = _help("Forbid repeating any n-gram of this size (0 = off).", default=0)
    repetition_penalty: float = _help("Divide the scores of tokens already generated by this (1.0 = off).", default=1.0)
    length_penalty: float = _help("Beam search only: > 1 favours longer summaries (1.0 = off).", default=1.0)
    min_new_tokens: int = _help("No end of summary before this many tokens (0 = off).", default=0)
    batch_size: int = _help("Generation batch size.", default=16)
    docs: int = _help("Validation documents generated and scored after every stage.", default=100)

    def decoding(self) -> dict:
        """The decoding options, as ``generate_summaries`` and ``generation_config.json`` take them."""
        return {k: getattr(self, k) for k in DECODING_DEFAULTS}


@dataclass
class ExperimentConfig:
    name: str = _help("Run name: results go to runs/<name>/.", default="experiment")
    output_dir: str = _help("Where the final pruned model is exported.", default="pruned_model")
    runs_dir: str = _help("Parent of the run folder.", default="runs")
    export_format: str = _help(
        "'hf' (save_pretrained, plain weights), 'course' (hf + model_state_dict.pth with the "
        "masks, what the course's grader reads) or 'compact' (non-zeros + bitmask, small).",
        default="hf")
    export_dtype: str = _help("Value dtype of the compact export: fp32 (exact), fp16, bf16, int8 (per-row "
                              "symmetric, zeros exact; the smallest).", default="fp32")
    export_trim_vocab: bool = _help(
        "Trim the exported model's vocabulary to the tokens of the run's training split (inputs with the "
        "prefix, and summaries; at least export_trim_min_count times) plus every special token: a smaller "
        "embedding and lm_head (summprune/vocab.py). Not for the course's submission: export_format='course' "
        "refuses it.", default=False)
    export_trim_min_count: int = _help("With export_trim_vocab: keep a token occurring at least this many times.",
                                       default=1)
    threads: int = _help("torch CPU threads for this run (0 = torch's default).", default=0)
    finetune: bool = _help("Fine-tune before pruning (False when starting from a fine-tuned model).", default=True)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --------------------------------------------------------------------------------------------
# building from dicts


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one TOML value against a dataclass field type."""
    origin = get_origin(tp)
    args = get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return _from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if args and type(None) in args:  # Optional[X]
        if value is None or value == "none" or value == "None":
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {value!r} is not a finite number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _from_dict(cls: type, data: dict, where: str) -> Any:
    if cls is PruneConfig:
        return _prune_from_dict(data, where)
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where + ': ' if where else ''}unknown {'' if where else 'top-level '}key(s) "
                          f"{unknown}; valid keys: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _prune_from_dict(data: dict, where: str) -> PruneConfig:
    """``[prune]``: tie_mode, groups, and one section per method (see :data:`SECTIONS`)."""
    own = {k: data[k] for k in ("tie_mode", "groups") if k in data}
    unknown = sorted(k for k in data if k not in own and k not in SECTIONS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: ['groups', 'tie_mode'] and the "
                          f"method sections {sorted(SECTIONS)}")
    hints = get_type_hints(PruneConfig)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in own.items()}
    methods: dict[str, Any] = {}
    for k, v in data.items():
        if k in own:
            continue
        sec = SECTIONS[k]
        if sec.many:
            if not isinstance(v, list):
                raise ConfigError(f"{where}.{k}: expected a list of tables ([[{where}.{k}]]), got {v!r}")
            methods[k] = [_coerce(item, sec.cls, f"{where}.{k}[{i}]") for i, item in enumerate(v)]
        else:
            methods[k] = _coerce(v, sec.cls, f"{where}.{k}")
    return PruneConfig(**kwargs, methods=methods)


def _parse_value(text: str) -> Any:
    """Parse an override's value as a TOML value; bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings to a nested dict (in place) and return it. A number selects
    an entry of a list: ``prune.stages.0.recover_steps=2``."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.epochs=1")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = data
        path = []
        for p in parts[:-1]:
            node = _child(node, p, path, item, create=True)
            path.append(p)
        last = parts[-1]
        value = _parse_value(raw.strip())
        if isinstance(node, list):
            idx = _index(node, last, path, item)
            node[idx] = value
        else:
            node[last] = value
    return data


def _index(node: list, p: str, path: list[str], item: str) -> int:
    if not p.isdigit():
        raise ConfigError(f"override {item!r}: {'.'.join(path)} is a list; select an entry by number, "
                          f"e.g. {'.'.join(path)}.0")
    i = int(p)
    if i >= len(node):
        raise ConfigError(f"override {item!r}: {'.'.join(path)} has {len(node)} entr{'y' if len(node) == 1 else 'ies'}; "
                          f"no entry {i}")
    return i


def _child(node: Any, p: str, path: list[str], item: str, create: bool) -> Any:
    if isinstance(node, list):
        child = node[_index(node, p, path, item)]
        if not isinstance(child, (dict, list)):
            raise ConfigError(f"override {item!r}: {'.'.join(path + [p])} is not a table")
        return child
    if not isinstance(node, dict):
        raise ConfigError(f"override {item!r}: {'.'.join(path)} is not a table")
    if p not in node:
        node[p] = {}
    child = node[p]
    if not isinstance(child, (dict, list)):
        raise ConfigError(f"override {item!r}: {'.'.join(path + [p])} is not a table")
    return child


def config_from_dict(data: dict, source: str = "<dict>") -> ExperimentConfig:
    try:
        cfg = _from_dict(ExperimentConfig, data, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    validate(cfg, source)
    return cfg


#: How many files an ``extends`` chain may hold (a cycle is reported as one, whatever its length).
MAX_EXTENDS_DEPTH = 32


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A TOML file as a dict; ``extends = "other.toml"`` (relative to the file) reads that file
    first and lays this one over it, table by table: settings shared by several configs (the
    recommended decoding) are written once."""
    if not path.is_file():
        raise ConfigError(f"{path}: {_not_a_file(path) or 'config file not found'}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; a config is a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: extends={base!r} is not a file name")
    base_path = (path.parent / base).resolve()
    if base_path in seen:
        chain = " -> ".join(p.name for p in (*seen, base_path))
        raise ConfigError(f"{path}: extends {base!r} makes a cycle ({chain})")
    if len(seen) >= MAX_EXTENDS_DEPTH:
        raise ConfigError(f"{path}: extends {base!r}: a chain of more than {MAX_EXTENDS_DEPTH} files "
                          "(MAX_EXTENDS_DEPTH); flatten some of them")
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends {base!r}, but {base_path} {_not_a_file(base_path) or 'does not exist'}")
    return _overlay(_read_toml(base_path, seen + (base_path,)), data)


def _not_a_file(path: Path) -> str:
    """What ``path`` is when it exists but is no regular file (a directory, a FIFO, a device such
    as /dev/zero: never read, a FIFO would block), else ``""``."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError:
        return ""
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")
    return f"is {kind}, not a regular file" if kind != "not a regular file" else "is not a regular file"


def _overlay(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _overlay(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a TOML experiment file (or defaults if None; ``extends`` read first), apply overrides,
    validate."""
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        data = _read_toml(path, (path.resolve(),))
    overrides = list(overrides or [])
    apply_overrides(data, overrides)
    try:
        return config_from_dict(data, source)
    except ConfigError as e:
        # a bad value given on the command line is reported as the override's, not the file's
        body = str(e)[len(source) + 2:] if str(e).startswith(source + ": ") else str(e)
        for item in overrides:
            key = item.split("=", 1)[0].strip()
            indexed = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key)  # prune.stages.0.x -> prune.stages[0].x
            parts = key.split(".")
            # the message names the key, or a table on its path ("prune.stages[0]: recover_...")
            prefixes = [re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", ".".join(parts[:i])) for i in range(len(parts), max(2, len(parts) - 3), -1)]
            # the table above each part of the key: "train" for train.batch_sise, "" for trian.batch_size
            levels = [re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", ".".join(parts[:i])) for i in range(len(parts))]
            named = (f" {key}" in body or f" {indexed}" in body
                     # "train: unknown key(s) ['batch_sise']" for the override train.batch_sise=3, and
                     # "unknown top-level key(s) ['trian']" for a misspelled table, trian.batch_size=3
                     or any(body.startswith(f"{lv}: unknown" if lv else "unknown top-level") and repr(parts[i]) in body
                            for i, lv in enumerate(levels))
                     or any(body.startswith(pre) and body[len(pre):len(pre) + 1] in (":", ".", "[", "=")
                            for pre in [key, *prefixes]))
            if named:
                raise ConfigError(f"override {item!r} (on {source}): {body}") from None
        raise


def config_to_dict(cfg: Any) -> Any:
    """A config (or part of one) as plain data, laid out as the TOML is: the methods of
    ``[prune]`` are its keys, beside tie_mode and groups."""
    if isinstance(cfg, PruneConfig):
        out: dict[str, Any] = {"tie_mode": cfg.tie_mode, "groups": dict(cfg.groups)}
        for k, v in cfg.methods.items():
            out[k] = [dataclasses.asdict(x) for x in v] if isinstance(v, list) else dataclasses.asdict(v)
        return out
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, dict)):
        return copy.deepcopy(cfg)
    return cfg


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """The resolved config, as JSON (every field, defaults included)."""
    from .io.files import atomic_write

    atomic_write(path, json.dumps(config_to_dict(cfg), indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# validation


def validate(cfg: ExperimentConfig, source: str = "<config>") -> None:
    def bad(msg: str) -> None:
        raise ConfigError(f"{source}: {msg}")

    if cfg.prune.tie_mode not in TIE_MODES:
        bad(f"prune.tie_mode={cfg.prune.tie_mode!r}: choose one of {list(TIE_MODES)}")
    for g, pat in cfg.prune.groups.items():
        try:
            re.compile(pat)
        except (re.error, TypeError) as e:
            bad(f"prune.groups.{g}={pat!r}: not a regular expression ({e})")
    for k in ("tiny_d_model", "tiny_layers", "tiny_heads", "tiny_d_ff", "tiny_vocab"):
        if getattr(cfg.model, k) < 1:
            bad(f"model.{k}={getattr(cfg.model, k)}: must be >= 1")
    if cfg.model.tiny_family not in TINY_FAMILIES:
        bad(f"model.tiny_family={cfg.model.tiny_family!r}: choose one of {list(TINY_FAMILIES)}")
    for name, section in cfg.prune.methods.items():
        sec = SECTIONS[name]
        for i, item in enumerate(section if sec.many else [section]):
            where = f"prune.{name}[{i}]" if sec.many else f"prune.{name}"
            if isinstance(item, RecoveryConfig):
                validate_recovery(item, where, bad)
            if sec.validate is not None:
                # validators write messages relative to their section: ".steps=0: ..." or ": ..."
                sec.validate(item, cfg.prune, lambda msg, w=where: bad(w + msg))
    # a run's folder is runs_dir/name: a name is one path component, never a way out of runs_dir
    if not cfg.name or Path(cfg.name).name != cfg.name or cfg.name in (".", "..") or "\\" in cfg.name:
        bad(f"name={cfg.name!r}: a run name is a plain folder name (no '/', '..' or absolute path)")
    for k in ("max_source_length", "max_target_length"):
        if getattr(cfg.data, k) < 1:
            bad(f"data.{k} must be >= 1")
    if cfg.data.val_size < 1:
        bad("data.val_size must be >= 1")
    try:
        check_decoding(cfg.eval.decoding(), where="eval")
    except ValueError as e:
        bad(str(e).replace("eval: ", "eval.", 1))
    if cfg.eval.batch_size < 1 or cfg.eval.docs < 1:
        bad("eval.batch_size and eval.docs must be >= 1")
    if cfg.train.learning_rate <= 0:
        bad("train.learning_rate must be > 0")
    if cfg.train.save_steps < 0:
        bad(f"train.save_steps={cfg.train.save_steps}: must be >= 0 (0 = no checkpoints)")
    if cfg.train.epochs < 0:
        bad(f"train.epochs={cfg.train.epochs}: must be >= 0")
    if not 0.0 <= cfg.train.warmup_ratio < 1.0 or cfg.train.weight_decay < 0:
        bad("train.warmup_ratio must be in [0, 1) and train.weight_decay >= 0")
    if cfg.train.batch_size < 1 or cfg.train.grad_accum < 1:
        bad("train.batch_size and train.grad_accum must be >= 1")
    # beyond this no batch fits in memory, and past sys.maxsize the Trainer's sampler fails only
    # after the first evaluation: refuse it at the start
    for k, v in (("train.batch_size", cfg.train.batch_size), ("train.grad_accum", cfg.train.grad_accum),
                 ("train.eval_batch_size", cfg.train.eval_batch_size), ("eval.batch_size", cfg.eval.batch_size)):
        if v > MAX_BATCH:
            bad(f"{k}={v}: must be <= {MAX_BATCH:,}")
    if cfg.threads != 0:  # 0 = torch's default; 100000 threads was a raw MemoryError
        from .limits import check_threads

        try:
            check_threads(cfg.threads, "threads")
        except ValueError as e:
            bad(f"threads={cfg.threads}:{str(e).split(':', 1)[1]} (0 = torch's default)")
    if cfg.train.precision not in ("auto", "fp32", "bf16", "fp16"):
        bad(f"train.precision={cfg.train.precision!r}: choose auto, fp32, bf16 or fp16")
    from .io.formats import FORMATS, refusal, stored_dtypes  # the registry (its first read loads the formats)

    if cfg.export_format not in FORMATS:
        bad(f"export_format={cfg.export_format!r}: choose one of {list(FORMATS)}")
    family = _known_family(cfg.model)
    if cfg.export_format in FORMATS and family is not None:
        why = refusal(cfg.export_format, family)
        if why is not None:
            where = (f"model.tiny_family={cfg.model.tiny_family!r}" if cfg.model.name == "tiny"
                     else f"model.name={cfg.model.name!r}")
            bad(f"export_format={cfg.export_format!r} with {where}: {why}")
    if cfg.export_format == "course" and TieMode.of(cfg.prune.tie_mode).unties_head:
        bad("export_format='course' with prune.tie_mode='untie': the course's loader ties lm_head to the "
            "embedding and cannot hold an lm_head of its own; use tie_mode 'tied' or 'course'")
    if cfg.export_trim_vocab and cfg.export_format == "course":
        bad("export_trim_vocab=true with export_format='course': the course's grader loads its model as t5-small's "
            "shape (32,128 vocabulary rows), so a trimmed model is not a course submission; export 'hf' or 'compact'")
    if cfg.export_trim_min_count < 1:
        bad(f"export_trim_min_count={cfg.export_trim_min_count}: must be >= 1")
    stored = stored_dtypes()
    if cfg.export_dtype not in stored:
        bad(f"export_dtype={cfg.export_dtype!r}: choose one of {stored}")
    elif cfg.export_format in FORMATS and cfg.export_dtype not in FORMATS[cfg.export_format].dtypes:
        which = [n for n, f in FORMATS.items() if cfg.export_dtype in f.dtypes]
        bad(f"export_dtype={cfg.export_dtype!r} applies to export_format={'/'.join(map(repr, which))} only "
            f"(the {cfg.export_format} format stores {', '.join(FORMATS[cfg.export_format].dtypes)})")


def _known_family(cfg_model: ModelConfig) -> str | None:
    """The model family a config's model is of where it is known before loading: ``tiny_family``
    for 'tiny', a local directory's config.json; None for a hub name (checked once loaded) or a
    directory whose model_type no family claims (loading it says so)."""
    from .models import family_of

    if cfg_model.name == "tiny":
        return cfg_model.tiny_family if cfg_model.tiny_family in TINY_FAMILIES else None
    d = Path(cfg_model.name).expanduser()
    if not (d / "config.json").is_file():
        return None
    try:
        return family_of(d).name
    except ValueError:
        return None


def validate_recovery(rc: RecoveryConfig, where: str, bad) -> None:
    """The recovery keys of any section (``where`` names it in the message)."""
    if rc.recover_epochs < 0 or rc.recover_steps < 0:
        bad(f"{where}: recover_epochs/recover_steps must be >= 0")
    if rc.learning_rate is not None and rc.learning_rate <= 0:
        bad(f"{where}.learning_rate={rc.learning_rate}: must be > 0")
    if not 0.0 <= rc.distill_alpha <= 1.0:
        bad(f"{where}.distill_alpha={rc.distill_alpha}: must be in [0, 1] (1 = no distillation)")
    if rc.distill_temperature <= 0:
        bad(f"{where}.distill_temperature={rc.distill_temperature}: must be > 0")
    if not rc.distill_features >= 0:  # also refuses NaN
        bad(f"{where}.distill_features={rc.distill_features}: must be >= 0 (0 = no feature distillation)")
    if not 0.0 <= rc.distill_sequences <= 1.0:  # also refuses NaN
        bad(f"{where}.distill_sequences={rc.distill_sequences}: must be in [0, 1] (the share of rows trained on "
            "the teacher's summaries; 0 = none)")
    if rc.distill_sequence_beams < 1:
        bad(f"{where}.distill_sequence_beams={rc.distill_sequence_beams}: must be >= 1 (1 = greedy)")


#: Names that lived here before each method's section moved beside its code (issue 23), still
#: importable from here (``from summprune.config import GradualConfig``): summprune.methods
#: registers them (:func:`register_moved`) when it is imported, which reading them runs.
MOVED: Registry = Registry("name moved to summprune.methods")


def register_moved(*objs: Any, names: dict[str, Any] | None = None) -> None:
    """Keep ``objs`` (classes, functions: by their ``__name__``) and ``names`` importable from
    this module under their old names."""
    for obj in objs:
        MOVED[obj.__name__] = obj
    for name, obj in (names or {}).items():
        MOVED[name] = obj


def __getattr__(name: str):
    if not name.startswith("__") and name in MOVED:
        return MOVED[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

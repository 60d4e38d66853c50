"""``save_pretrained`` directories: writing one (weights, tokenizer, pruning.json, checksums) and
checking one before transformers loads it (checksums, key and shape coverage).

Also the checks every loader of this package shares (this is the lowest module that knows models,
so ``compact``, ``course`` and ``summprune.export`` all use them): :func:`read_config` (the one
config validation: sizes checked before anything is built, :func:`check_config`),
:func:`meta_model` (the architecture with no memory, and the memory budget of the load,
:func:`check_model_memory` over :mod:`summprune.limits`), :func:`check_vocabulary`,
:func:`check_finite`, :func:`file_inside` (a name a manifest lists stays inside the model
directory) and :func:`load_generation_config`."""

from __future__ import annotations

import re

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from ..models import family_of

from .files import read_json, sha256_file, write_json

WEIGHTS = "model.safetensors"
PRUNING = "pruning.json"
CHECKSUMS = "checksums.json"  # hf and course formats
#: Files a tokenizer may consist of; ``export_model`` copies those present in the source dir.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "spiece.model", "sentencepiece.bpe.model", "vocab.json", "vocab.txt", "merges.txt",
    "chat_template.jinja", "chat_template.json",
    # a trimmed vocabulary's new id -> original id (summprune.vocab.MAP_FILE): it says what the
    # tokenizer's ids mean against the original model's, so it travels with the tokenizer
    "vocab_trim.json",
)
#: Largest model (parameters, counted on the meta device) a loader builds: 80 GB in fp32.
MAX_PARAMS = 20_000_000_000
#: safetensors dtypes of floating-point tensors (a float parameter must be stored as one of these).
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")

def write_hf(model: nn.Module, tmp: Path, tokenizer: Any, pruning_info: dict | None,
              extra_checksummed: tuple[str, ...] = ()) -> None:
    """save_pretrained + tokenizer + pruning.json + checksums.json into ``tmp``."""
    model.save_pretrained(str(tmp))
    enable_cache(tmp)
    save_tokenizer(tokenizer, tmp, getattr(model.config, "vocab_size", None))
    write_pruning(pruning_info, tmp)
    weight_files = sorted(p.name for p in tmp.iterdir()
                          if p.name.endswith((".safetensors", ".safetensors.index.json")) or p.name in extra_checksummed)
    write_json(tmp / CHECKSUMS, {
        "format": "summprune-hf-checksums", "version": 1, "algorithm": "sha256",
        "files": {f: sha256_file(tmp / f) for f in weight_files},
    })


def verify_checksums(d: Path) -> None:
    """Every file ``checksums.json`` lists (if there is one) exists and has its sha256."""
    sums = d / CHECKSUMS
    if sums.is_file():
        info = read_json(sums)
        files = info.get("files") if isinstance(info, dict) else None
        if not isinstance(files, dict):
            raise ValueError(f"{sums}: malformed (no 'files' table)")
        for fname, digest in files.items():
            f = file_inside(d, fname, sums)
            got = sha256_file(f)
            if got != digest:
                raise ValueError(f"{f}: checksum mismatch (sha256 {got[:16]}... != {CHECKSUMS}'s "
                                 f"{str(digest)[:16]}...); the file is truncated or corrupt")


def validate_hf_dir(d: Path) -> dict[str, Path]:
    """Checksums (if recorded), generation config, and key/shape/dtype coverage of a
    save_pretrained directory, on the meta device (nothing is allocated). Returns tensor name ->
    the file holding it, for :func:`check_finite` once transformers has loaded them."""
    family_of(d)  # an unsupported model_type: said first, before any file is read
    verify_checksums(d)
    load_generation_config(d)  # transformers would raise a TypeError on a list, say
    index = d / "model.safetensors.index.json"
    if index.is_file():
        info = read_json(index)
        wm = info.get("weight_map") if isinstance(info, dict) else None
        if not isinstance(wm, dict) or not wm:
            raise ValueError(f"{index}: malformed (no 'weight_map' table of tensor name -> file)")
        shards = sorted({file_inside(d, s, index) for s in wm.values()})
    elif (d / WEIGHTS).is_file():
        shards = [d / WEIGHTS]
    else:
        pickles = sorted(p.name for p in d.iterdir() if p.is_file() and p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise ValueError(f"{d}: no safetensors weights (model.safetensors)"
                         + (f"; {', '.join(pickles)} is a pickle-based checkpoint, which this project does not "
                            "load (unpickling can run code): convert it to safetensors with a trusted copy of "
                            "transformers (save_pretrained(..., safe_serialization=True))" if pickles else ""))
    from safetensors import safe_open

    have: dict[str, list[int]] = {}
    dtypes: dict[str, str] = {}
    where: dict[str, Path] = {}
    for s in shards:
        try:
            with safe_open(str(s), framework="pt") as f:
                for k in f.keys():
                    sl = f.get_slice(k)
                    have[k], dtypes[k], where[k] = list(sl.get_shape()), sl.get_dtype(), s
        except Exception as e:
            raise ValueError(f"{s}: cannot be read as safetensors ({e}); the file is truncated or corrupt") from None
    meta = meta_model(d)
    groups: dict[int, list[str]] = {}
    for k, t in meta.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), []).append(k)
    # tensors the model computes itself and save_pretrained leaves out (the family says which:
    # Marian's sinusoidal positions) are not missing
    unsaved = [re.compile(rx) for rx in family_of(d).unsaved]
    missing = [g[0] if len(g) == 1 else "/".join(g) for g in groups.values() if not any(k in have for k in g)
               and not any(rx.search(k) for rx in unsaved for k in g)]
    if missing:
        hint = ""
        if any(k.endswith(("_orig", "_mask")) for k in have):
            hint = (" It holds pruning masks (weight_orig/weight_mask): it was saved without making "
                    "pruning permanent; re-export it with summprune.export.save_hf.")
        raise ValueError(f"{shards[0]}: {len(missing)} weight(s) the model needs are not in the "
                         f"checkpoint (transformers would initialise them randomly): {missing[:5]}.{hint}")
    sd = meta.state_dict()
    for k, shape in have.items():
        if k in sd and list(sd[k].shape) != shape:
            raise ValueError(f"{d}: tensor {k!r} has shape {shape} in the checkpoint but config.json implies {list(sd[k].shape)}")
        if k in sd and sd[k].is_floating_point() and dtypes[k] not in FLOAT_DTYPES:
            raise ValueError(f"{where[k]}: tensor {k!r} is stored as {dtypes[k]}, not floating point; "
                             "the model's weights are float tensors")
    return where


def check_config(config, path: Path) -> None:
    """ValueError naming ``path`` (config.json) and the key if a size is not a positive whole
    number or exceeds its family's limit (``Family.config_limits``; a corrupt or hostile config
    is refused by name: num_layers=1000000 hung the loader, vocab_size=5e7 allocated 12.8 GB
    before any check): checked before any model is built from ``config``. ``config`` is a
    transformers config or the dict of a config.json (checked before transformers reads it:
    its strict fields raise a raw TypeError on ``vocab_size=32128.0``)."""
    fam = family_of(config)
    for key, cap in fam.config_limits.items():
        if isinstance(config, dict):
            if key not in config:  # the config class's default, checked once transformers has read it
                continue
            v = config[key]
        else:
            v = getattr(config, key, None)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{path}: {key}={v!r} is not a positive whole number (the key '{key}' holds "
                             f"a {type(v).__name__}: write {v!r} as an integer)")
        if v <= 0:
            raise ValueError(f"{path}: {key}={v!r} is not a positive whole number")
        if v > cap:
            raise ValueError(f"{path}: {key}={v:,} exceeds this package's limit of {cap:,}; "
                             f"the file is corrupt or not a {fam.name} model this package handles")


def read_config(d: Path):
    """The transformers config of ``d/config.json``, checked: one validation every loader (and
    generate_csv.py) shares: the family supported, every size a positive whole number within
    the family's limits (on the file's values first, then on the config transformers made of
    them), anything transformers refuses a ValueError naming the file."""
    from transformers import AutoConfig

    path = d / "config.json"
    fam = family_of(d)  # an unsupported model_type: one error listing the supported ones
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a JSON object (a {type(raw).__name__}); expected a model config")
    check_config(raw, path)
    try:
        config = AutoConfig.from_pretrained(str(d))
    except Exception as e:  # huggingface_hub's StrictDataclassFieldValidationError is no ValueError
        raise ValueError(f"{path}: cannot be read as a {fam.name} config "
                         f"({type(e).__name__}: {str(e).strip().splitlines()[-1][:200]})") from None
    check_config(config, path)
    return config


def model_bytes(model: nn.Module) -> int:
    """Bytes the tensors of ``model`` (built on the meta device: shapes and dtypes only) take
    once allocated: every parameter and buffer once (a tied tensor counts once)."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def check_model_memory(model: nn.Module, path: Path | str, copies: int = 1, what: str = "loading the model") -> None:
    """:func:`summprune.limits.check_memory` for ``copies`` dense copies of ``model`` (on the
    meta device): a loader that holds the file's tensors and the model's at once passes 2."""
    from ..limits import check_memory

    n = model_bytes(model)
    check_memory(copies * n, f"{what} ({sum(p.numel() for p in model.parameters()):,} parameters, "
                             f"{copies} dense cop{'y' if copies == 1 else 'ies'} in fp32)", str(path))


def meta_model_from_config(config, path: Path | str, copies: int = 1, what: str = "loading the model") -> nn.Module:
    """The architecture of ``config`` (checked by :func:`check_config`) on the meta device (shapes
    only, no memory), its parameter count capped (:data:`MAX_PARAMS`) and the memory ``copies``
    dense copies of it take checked against the budget (:mod:`summprune.limits`). ``path`` names
    where the config came from in every message."""
    fam = family_of(config)
    check_config(config, Path(path))
    try:
        with torch.device("meta"):
            model = fam.build(config)
    except Exception as e:  # an odd value the size checks do not cover, e.g. feed_forward_proj
        raise ValueError(f"{path}: no {fam.name} model can be built from it ({type(e).__name__}: {e})") from None
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMS:
        raise ValueError(f"{path}: describes a model of {n:,} parameters, more than this package's limit of "
                         f"{MAX_PARAMS:,} ("
                         + ", ".join(f"{k}={getattr(config, k, None)}" for k in fam.config_limits) + ")")
    check_model_memory(model, path, copies, what)
    return model


def meta_model(d: Path, copies: int = 1, what: str = "loading the model") -> nn.Module:
    """The architecture of ``d/config.json`` on the meta device (shapes only, no memory): the
    config read and checked by :func:`read_config`, then :func:`meta_model_from_config` (the
    parameter cap and the memory budget of ``copies`` dense copies)."""
    return meta_model_from_config(read_config(d), d / "config.json", copies, what)


def check_finite(model: nn.Module, source: Path | dict[str, Path] | None = None) -> None:
    """ValueError naming the tensors that hold NaN or inf.

    Without ``source`` (an export) the message says nothing was written: such a model (a diverged
    training) is never exported. When loading, ``source`` is the weights file, or a table of
    tensor name -> file, named in the message: such a model generates empty summaries."""
    seen: set[int] = set()
    bad = []
    for n, t in model.state_dict(keep_vars=True).items():
        if id(t) in seen:  # a tied tensor: named once
            continue
        seen.add(id(t))
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad.append(n)
    if not bad:
        return
    which = f"NaN/inf in {len(bad)} tensor(s): {', '.join(map(repr, bad[:4]))}{' ...' if len(bad) > 4 else ''}"
    if source is None:
        raise ValueError(f"the model's weights are not all finite ({which}); training diverged, e.g. a too "
                         "large learning rate; nothing was written")
    file = source.get(bad[0], next(iter(source.values()), "?")) if isinstance(source, dict) else source
    raise ValueError(f"{file}: the weights are not all finite ({which}); such a model generates empty "
                     "summaries: it comes from a diverged training, or the file is corrupt")


def file_inside(d: Path, name: Any, listed_in: Path | str) -> Path:
    """``d / name``, checked to be a regular file inside ``d``: ``name`` is a relative path without
    ``..`` and, symlinks resolved, stays in ``d``. A manifest (``checksums.json``, an index,
    ``compact.json``) or a tokenizer file must not make a loader hash, load or copy a file from
    elsewhere. Missing: FileNotFoundError; anything else: ValueError naming the file."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"{listed_in}: {name!r} is not a file name")
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"{listed_in}: {name!r} is not a file name inside {d}; "
                         "refusing a file outside the model directory")
    f = d / rel
    if not f.exists():
        if f.is_symlink():
            raise ValueError(f"{f}: a symlink to {os.readlink(f)}, which does not exist (listed in {listed_in})")
        raise FileNotFoundError(f"{f}: missing (listed in {listed_in})")
    real = f.resolve()
    if not any(real.is_relative_to(root) for root in _allowed_roots(d)):
        raise ValueError(f"{f}: a symlink to {real}, outside {d} (listed in {listed_in}); refusing to read it")
    if not real.is_file():  # a directory, FIFO or device
        raise ValueError(f"{f}: not a regular file (listed in {listed_in})")
    return f


def _allowed_roots(d: Path) -> list[Path]:
    """Where the files of model folder ``d`` may really live: in ``d``, and, for a Hugging Face
    hub cache snapshot (``.../models--ORG--NAME/snapshots/<revision>``, whose files are symlinks
    to ``../../blobs/<sha>``), in that repository's ``blobs`` folder."""
    roots = [d.resolve()]
    if d.parent.name == "snapshots":
        roots.append(d.parent.parent.resolve() / "blobs")
    return roots


def load_generation_config(d: Path) -> GenerationConfig | None:
    """``d/generation_config.json`` if present (None if not); ValueError naming it if it is not a
    JSON object or transformers cannot read it (it raises TypeError on a list, for one)."""
    path = d / "generation_config.json"
    if not path.is_file():
        return None
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a JSON object (a {type(obj).__name__}); expected a table of generation settings")
    try:
        return GenerationConfig.from_pretrained(str(d))
    except Exception as e:
        raise ValueError(f"{path}: cannot be read as a generation config ({type(e).__name__}: {e})") from None


def enable_cache(d: Path) -> None:
    """Set ``use_cache`` back to true in ``d``'s config.json and generation_config.json.

    Training turns the key/value cache off on the model object (the Trainer does, for gradient
    checkpointing), and ``save_pretrained`` writes what the object holds; an exported model is for
    generation, where plain transformers honours the saved value and runs 3.5x slower without it.
    Edits the written files, so the caller's model is left as it is."""
    for name in ("config.json", "generation_config.json"):
        f = d / name
        if f.is_file():
            obj = read_json(f)
            if isinstance(obj, dict) and obj.get("use_cache") is False:
                obj["use_cache"] = True
                write_json(f, obj)


#: The weight files of every format (a sharded checkpoint's ``model-*.safetensors`` besides).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "compact.json", "compact.safetensors",
                "model_state_dict.pth")


def model_file_names(d: Path) -> list[str]:
    """The names of the files of model directory ``d`` that decide what loading it gives: config,
    weights (any format, shards included), generation_config.json, checksums and the tokenizer
    files; what a CTranslate2 conversion reads and a prune work folder fingerprints."""
    shards = sorted(p.name for p in d.glob("model-*.safetensors"))
    names = ["config.json", *WEIGHT_FILES, *shards, "generation_config.json", CHECKSUMS, *TOKENIZER_FILES]
    return [n for n in names if (d / n).is_file()]


def tokenizer_files(src: Path) -> list[Path]:
    """The :data:`TOKENIZER_FILES` present in ``src`` (a symlink counts as present, so that one
    pointing out of ``src`` is refused rather than skipped)."""
    return [src / f for f in TOKENIZER_FILES if (src / f).is_file() or (src / f).is_symlink()]


class TokenizerFiles:
    """Tokenizer given as files to copy verbatim (export from a directory).

    Each file must be a regular file inside its directory (a symlink out would copy, say, a
    private key into the export), and the JSON ones must be what a tokenizer reads, so that a
    broken tokenizer is refused here, naming the file, not when the export is used. ValueError
    (FileNotFoundError for a file that has gone)."""

    def __init__(self, files: list[Path]):
        self.files = [file_inside(f.parent, f.name, f"the tokenizer of {f.parent}") for f in files]
        for f in self.files:
            if f.suffix == ".json":
                _check_tokenizer_json(f)

    def save_pretrained(self, d: str) -> None:
        for f in self.files:
            # checked again: a file swapped for a symlink since __init__ is not followed
            shutil.copyfile(file_inside(f.parent, f.name, f"the tokenizer of {f.parent}"), Path(d) / f.name)


def _check_tokenizer_json(f: Path) -> None:
    obj = read_json(f)
    if not isinstance(obj, dict):
        raise ValueError(f"{f}: not a JSON object (a {type(obj).__name__}); not a tokenizer file")
    if f.name == "tokenizer.json":
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_file(str(f))
        except Exception as e:  # tokenizers raises a bare Exception on a schema mismatch
            raise ValueError(f"{f}: not a tokenizer the tokenizers library can read "
                             f"({str(e).splitlines()[0][:200]})") from None


def check_vocabulary(n_tokens: int, config: Any, where: str) -> None:
    """ValueError naming both sizes when a tokenizer of ``n_tokens`` ids (or the largest id + 1
    it produced) does not fit the model's embedding (``config.vocab_size``, a config or its
    dict): an id past it was a raw IndexError in torch's embedding."""
    vocab = config.get("vocab_size") if isinstance(config, dict) else getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and n_tokens > vocab:
        raise ValueError(f"{where}: the tokenizer gives token ids up to {n_tokens - 1:,} ({n_tokens:,} ids) but "
                         f"the model's vocab_size is {vocab:,} (config.json): ids {vocab:,} and above have no "
                         "embedding; the tokenizer is not this model's")


def _tokenizer_size(tokenizer: Any) -> int | None:
    """How many token ids ``tokenizer`` (an object, or :class:`TokenizerFiles`) gives, where that
    can be told without loading it whole (a SentencePiece-only folder: None)."""
    if isinstance(tokenizer, TokenizerFiles):
        tj = next((f for f in tokenizer.files if f.name == "tokenizer.json"), None)
        if tj is None:
            return None
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(tj)).get_vocab_size(with_added_tokens=True)
    try:
        return len(tokenizer)
    except TypeError:
        return None


def save_tokenizer(tokenizer: Any, d: Path, vocab_size: int | None = None) -> None:
    """Write ``tokenizer`` (an object, a folder or a hub name) into ``d``; with ``vocab_size``
    (the model's), a tokenizer of more ids than that is refused, naming both sizes."""
    if tokenizer is None:
        return
    source = f"the tokenizer {tokenizer}" if isinstance(tokenizer, (str, os.PathLike)) else "the tokenizer"
    if isinstance(tokenizer, (str, os.PathLike)):
        src = Path(tokenizer).expanduser()
        if src.is_dir():
            files = tokenizer_files(src)
            if not files:
                raise FileNotFoundError(f"{src}: no tokenizer files ({', '.join(TOKENIZER_FILES[:5])}, ...)")
            tokenizer = TokenizerFiles(files)
        else:
            from ..modeling import load_tokenizer

            try:
                tokenizer = load_tokenizer(str(tokenizer))
            except (OSError, ValueError):
                raise
            except Exception as e:  # tokenizers' bare Exception for a file of the wrong schema
                raise ValueError(f"{tokenizer}: its tokenizer cannot be read ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200]})") from None
    if vocab_size is not None:
        n = _tokenizer_size(tokenizer)
        if n is not None:
            try:
                check_vocabulary(n, {"vocab_size": vocab_size}, source)
            except ValueError as e:
                raise ValueError(f"{e}; nothing was written") from None
    tokenizer.save_pretrained(str(d))


def write_pruning(info: dict | None, d: Path) -> None:
    if info is not None:
        write_json(d / PRUNING, info)

"""``save_pretrained`` directories: writing one (weights, tokenizer, pruning.json, checksums) and
checking one before transformers loads it (checksums, key and shape coverage)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration

from .files import read_json, sha256_file, write_json

WEIGHTS = "model.safetensors"
PRUNING = "pruning.json"
CHECKSUMS = "checksums.json"  # hf and course formats
#: Files a tokenizer may consist of; ``export_model`` copies those present in the source dir.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "spiece.model", "sentencepiece.bpe.model", "vocab.json", "vocab.txt", "merges.txt",
    "chat_template.jinja", "chat_template.json",
)

def write_hf(model: nn.Module, tmp: Path, tokenizer: Any, pruning_info: dict | None,
              extra_checksummed: tuple[str, ...] = ()) -> None:
    """save_pretrained + tokenizer + pruning.json + checksums.json into ``tmp``."""
    model.save_pretrained(str(tmp))
    save_tokenizer(tokenizer, tmp)
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
            f = d / fname
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing (listed in {sums})")
            got = sha256_file(f)
            if got != digest:
                raise ValueError(f"{f}: checksum mismatch (sha256 {got[:16]}... != {CHECKSUMS}'s "
                                 f"{str(digest)[:16]}...); the file is truncated or corrupt")


def validate_hf_dir(d: Path) -> None:
    """Checksums (if recorded) and key/shape coverage of a save_pretrained directory."""
    verify_checksums(d)
    index = d / "model.safetensors.index.json"
    if index.is_file():
        wm = read_json(index).get("weight_map", {})
        shards = sorted({d / s for s in wm.values()})
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
    for s in shards:
        if not s.is_file():
            raise FileNotFoundError(f"{s}: missing (listed in {index})")
        try:
            with safe_open(str(s), framework="pt") as f:
                for k in f.keys():
                    have[k] = list(f.get_slice(k).get_shape())
        except Exception as e:
            raise ValueError(f"{s}: cannot be read as safetensors ({e}); the file is truncated or corrupt") from None
    meta = meta_model(d)
    groups: dict[int, list[str]] = {}
    for k, t in meta.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), []).append(k)
    missing = [g[0] if len(g) == 1 else "/".join(g) for g in groups.values() if not any(k in have for k in g)]
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


def meta_model(d: Path) -> T5ForConditionalGeneration:
    """The architecture of ``d/config.json`` on the meta device (shapes only, no memory)."""
    try:
        config = T5Config.from_pretrained(str(d))
    except Exception as e:
        raise ValueError(f"{d / 'config.json'}: cannot be read as a T5 config ({e})") from None
    with torch.device("meta"):
        return T5ForConditionalGeneration(config)


class TokenizerFiles:
    """Tokenizer given as files to copy verbatim (export from a directory)."""

    def __init__(self, files: list[Path]):
        self.files = files

    def save_pretrained(self, d: str) -> None:
        for f in self.files:
            shutil.copy2(f, Path(d) / f.name)


def save_tokenizer(tokenizer: Any, d: Path) -> None:
    if tokenizer is None:
        return
    if isinstance(tokenizer, (str, os.PathLike)):
        src = Path(tokenizer).expanduser()
        if src.is_dir():
            files = [src / f for f in TOKENIZER_FILES if (src / f).is_file()]
            if not files:
                raise FileNotFoundError(f"{src}: no tokenizer files ({', '.join(TOKENIZER_FILES[:5])}, ...)")
            tokenizer = TokenizerFiles(files)
        else:
            from .modeling import load_tokenizer

            tokenizer = load_tokenizer(str(tokenizer))
    tokenizer.save_pretrained(str(d))


def write_pruning(info: dict | None, d: Path) -> None:
    if info is not None:
        write_json(d / PRUNING, info)

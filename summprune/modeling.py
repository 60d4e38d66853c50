"""Models, tokenizers and the layer groups that pruning targets.

Pruning targets are described as module-name patterns (llm-compressor style), so the same recipe
applies to t5-small, the tiny test model and any T5 of another depth.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

#: Default layer groups: regex on ``model.named_modules()`` names; only nn.Linear modules count.
#: The T5 block layout is fixed: encoder layer.0 = self-attention, layer.1 = FFN; decoder
#: layer.0 = self-attention, layer.1 = cross-attention, layer.2 = FFN. ``wi_0``/``wi_1`` cover
#: gated-FFN T5 variants (t5-v1_1, flan-t5).
GROUP_PATTERNS: dict[str, str] = {
    "enc_self_attn": r"^encoder\.block\.\d+\.layer\.0\.SelfAttention\.(q|k|v|o)$",
    "enc_ffn": r"^encoder\.block\.\d+\.layer\.1\.DenseReluDense\.(wi|wi_0|wi_1|wo)$",
    "dec_self_attn": r"^decoder\.block\.\d+\.layer\.0\.SelfAttention\.(q|k|v|o)$",
    "cross_attn": r"^decoder\.block\.\d+\.layer\.1\.EncDecAttention\.(q|k|v|o)$",
    "dec_ffn": r"^decoder\.block\.\d+\.layer\.2\.DenseReluDense\.(wi|wi_0|wi_1|wo)$",
    "lm_head": r"^lm_head$",
}


def group_patterns(overrides: dict[str, str] | None = None) -> dict[str, str]:
    pats = dict(GROUP_PATTERNS)
    pats.update(overrides or {})
    return pats


def group_modules(model: nn.Module, patterns: dict[str, str] | None = None) -> dict[str, list[tuple[str, nn.Linear]]]:
    """Map each group to its ``(name, nn.Linear)`` modules, in model order.

    Raises ValueError if a module would fall in two groups or a group matches nothing, because
    either means the recipe does not prune what it says.
    """
    pats = group_patterns(patterns)
    compiled = {g: re.compile(p) for g, p in pats.items()}
    out: dict[str, list[tuple[str, nn.Linear]]] = {g: [] for g in compiled}
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        hits = [g for g, rx in compiled.items() if rx.search(name)]
        if len(hits) > 1:
            raise ValueError(f"module {name!r} matches several groups: {hits}")
        if hits:
            out[hits[0]].append((name, mod))
    empty = [g for g, mods in out.items() if not mods]
    if empty:
        raise ValueError(f"group(s) {empty} match no nn.Linear module in this model; patterns: "
                         + ", ".join(f"{g}={pats[g]!r}" for g in empty))
    return out


def tiny_config(vocab_size: int, d_model: int = 64, layers: int = 2, heads: int = 4, d_ff: int = 128) -> T5Config:
    """A T5 of the t5-small layout (ReLU FFN, tied embedding, relative attention), only smaller."""
    return T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=d_ff,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.1,
        feed_forward_proj="relu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


def build_tiny_model(vocab_size: int, d_model: int = 64, layers: int = 2, heads: int = 4,
                     d_ff: int = 128, seed: int = 0) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(tiny_config(vocab_size, d_model, layers, heads, d_ff))


def random_model_from_config(config_dir: str | Path, seed: int = 0) -> T5ForConditionalGeneration:
    """A randomly initialised model of the shape in ``config_dir/config.json`` (no weights needed)."""
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(T5Config.from_pretrained(str(config_dir)))


def load_tokenizer(name_or_dir: str | Path):
    """Tokenizer by hub name or local directory; a missing directory is a clear error."""
    name = str(name_or_dir)
    if _looks_like_path(name) and not Path(name).is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {name}")
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:  # tokenizers raises plain Exception for a corrupt tokenizer.json
        if not Path(name).is_dir():
            if isinstance(e, OSError):
                raise OSError(_hub_hint("tokenizer", name, e)) from None
            raise
        # an OSError stays one (callers catch it as "cannot read"); a parse error becomes ValueError
        kind = OSError if isinstance(e, OSError) else ValueError
        raise kind(_corrupt_file_hint(Path(name), e, "the tokenizer")) from None


#: The JSON files AutoTokenizer reads from a directory (config.json for the model type).
_TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "config.json")


def _corrupt_file_hint(d: Path, e: Exception, what: str) -> str:
    """Name the JSON file of ``d`` that does not parse (truncated, say); else ``d`` and the error."""
    import json

    for f in _TOKENIZER_JSON:
        p = d / f
        if p.is_file():
            try:
                json.loads(p.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as bad:
                return f"{p}: not valid JSON ({bad}); the file is truncated or corrupt"
    return f"{d}: cannot load {what} ({type(e).__name__}: {e})"


def _hub_hint(what: str, name: str, e: Exception) -> str:
    msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return (f"{name!r}: cannot load the {what} from the Hugging Face hub ({msg}); offline, pass a local "
            f"model directory (a save_pretrained folder with config.json and the tokenizer files), e.g. "
            f"model.name=/data/t5-small")


def load_pretrained(name_or_dir: str | Path) -> T5ForConditionalGeneration:
    """A seq2seq model by hub name or a ``save_pretrained`` directory (see export.load_model for
    the compact format too)."""
    name = str(name_or_dir)
    if _looks_like_path(name):
        p = Path(name)
        if not p.is_dir():
            raise FileNotFoundError(f"model directory not found: {name}")
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{name}: no config.json; is this a model directory?")
        return T5ForConditionalGeneration.from_pretrained(name)
    try:
        return T5ForConditionalGeneration.from_pretrained(name)
    except OSError as e:  # offline, or no such repository: the way out is a local directory
        raise OSError(_hub_hint("model", name, e)) from None


def _looks_like_path(name: str) -> bool:
    # Hub ids are "t5-small" or "org/name"; anything that exists locally, starts with . / ~,
    # or has more than one slash is a path, so a typo gives "not found" rather than a hub error.
    return Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") > 1


def tied_parameter_modules(model: nn.Module, param: nn.Parameter) -> list[tuple[str, nn.Module]]:
    """Every module whose ``weight`` (or ``weight_orig`` once pruned) is ``param``."""
    out = []
    for name, mod in model.named_modules():
        w = mod._parameters.get("weight_orig", mod._parameters.get("weight"))
        if w is param:
            out.append((name, mod))
    return out

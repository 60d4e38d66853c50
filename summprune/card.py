"""The model card every export writes: ``README.md`` in the Hugging Face convention.

YAML front matter (``base_model`` where the run recorded a hub name, ``library_name``,
``pipeline_tag: summarization``, ``tags``), then what the model is and how it was made (the
command where one was recorded, the recipe), both ratios, its shape and parameters against the
original, the size of every file written, the quality before and after pruning where the run
measured it, and how to load it. Every figure comes from the model being written, its files or its
``pruning.json`` (what the run recorded); a figure nobody measured is left out, never estimated:
this module times nothing, so the card says nothing about speed.

:func:`write_card` is called by the one writer every export format goes through
(``summprune.export._export_dir``), inside the temporary directory, so the card appears with the
model or not at all. :func:`model_card` is what ``report --model`` prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

CARD = "README.md"
#: marks a card this module wrote (``report`` prints such a card as it is; any other README.md is
#: not ours to vouch for)
TAG = "summprune"


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _yaml_str(s: str) -> str:
    """``s`` as a YAML scalar: JSON's double-quoted string is valid YAML."""
    return json.dumps(s)


def front_matter(card: str) -> dict[str, Any]:
    """The front matter of ``card`` as ``{key: str | list[str]}``: the subset of YAML this module
    writes (``key: value`` lines, ``- item`` lists, JSON-quoted strings). ValueError where the
    text does not start with a ``---`` block."""
    lines = card.split("\n")
    if not lines or lines[0] != "---" or "---" not in lines[1:]:
        raise ValueError("no YAML front matter (the card must start with a '---' line and close it with another)")
    out: dict[str, Any] = {}
    key = None
    for line in lines[1:lines.index("---", 1)]:
        if line.startswith("- ") and key is not None:
            out.setdefault(key, [])
            out[key].append(_scalar(line[2:]))
        elif ":" in line:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            out[key] = _scalar(value) if value else []
        elif line.strip():
            raise ValueError(f"front matter line {line!r} is neither 'key: value' nor '- item'")
    return out


def _scalar(text: str) -> str:
    text = text.strip()
    return json.loads(text) if text.startswith('"') else text


def _files(d: Path) -> dict[str, int]:
    """Bytes of every file of the model directory ``d`` but its card (relative names)."""
    return {str(p.relative_to(d)): p.stat().st_size for p in sorted(d.rglob("*"))
            if p.is_file() and p.name != CARD}


def _stored_dtype(dtype: str | None, d: Path) -> str | None:
    if dtype is not None:
        return dtype
    from .summary import stored_info

    return stored_info(d)["dtype"]


def model_card(model: nn.Module, model_dir: str | Path, fmt: str | None, dtype: str | None = None,
               pruning_info: dict | None = None) -> str:
    """The card of ``model`` as stored in ``model_dir`` (its files are listed with their sizes;
    ``pruning.json`` there gives the original model). ``fmt``: the export format's name;
    ``dtype``: the stored value dtype (None: read from the weight files); ``pruning_info``: what
    the run recorded (``pruning.json``), or None (then the card holds only what the model and its
    files show)."""
    from . import sparsity as S
    from .models import family_of
    from .modeling import _looks_like_path
    from .summary import original_from, shape_text, summarize

    d = Path(model_dir)
    info = pruning_info if isinstance(pruning_info, dict) else {}
    dtype = _stored_dtype(dtype, d)
    original, source = original_from(d) if (d / "pruning.json").is_file() else (None, "")
    s = summarize(model, None, original, source)
    final = info.get("final") if isinstance(info.get("final"), dict) else {}
    recorded_mask = final.get("mask_ratio")
    if _num(recorded_mask):
        mask, mask_where = float(recorded_mask), "pruning.json final.mask_ratio, measured while the masks existed"
    else:
        mask, mask_where = S.mask_ratio(model), "counted on the model: no pruning.json records it"
    nonzero = s["nonzero_ratio"]
    groups = [g for g in s["groups"].values() if g["params"]]
    prunable = sum(g["params"] for g in groups)
    zeros = sum(g["params"] * (1 - g["nonzero_ratio"]) for g in groups)
    # a dense model has a few zeros of its own (BART's and Pegasus's padding row of the embedding,
    # 1/vocab of lm_head; their zero biases are outside the groups, but the course's ratio of a
    # model without masks counts them): sparse means pruning.json records masked weights, or more
    # than 1% of the prunable weights are zeros
    sparse = (_num(recorded_mask) and recorded_mask < 1.0) or (prunable > 0 and zeros / prunable > 0.01)
    structured = "structured" in info or s.get("params_vs_original", 1.0) < 1.0
    base = info.get("base_model") if isinstance(info.get("base_model"), str) else None
    family = family_of(model).name

    tags = [TAG, "summarization"]
    if sparse or structured:
        tags.append("pruned")
    if sparse:
        tags.append("sparse")
    if structured:
        tags.append("structured")
    if dtype == "int8":
        tags.append("int8")
    vocab = info.get("vocabulary") if isinstance(info.get("vocabulary"), dict) else None
    if vocab:
        tags.append("vocabulary-trimmed")
    fm = ["---"]
    if base and not _looks_like_path(base):  # a local directory is no hub name: said in the body only
        fm.append(f"base_model: {_yaml_str(base)}")
    fm += ["library_name: transformers", "pipeline_tag: summarization", "tags:", *[f"- {t}" for t in tags], "---"]

    body = [f"# A compressed {family} summarizer", "",
            f"Written by summprune in its `{fmt}` export format ({dtype or 'dtype not recorded'}). "
            "Every figure below comes from this model, its files or its run's `pruning.json`; "
            "what was not measured is not stated."]

    body += ["", "## How it was made", ""]
    command = info.get("command")
    body.append(f"- command: `{command}`" if isinstance(command, str) and command
                else "- command: not recorded")
    if base:
        body.append(f"- started from: `{base}`")
    stages = info.get("stages") if isinstance(info.get("stages"), list) else []
    if stages:
        methods = sorted({str(r.get("method")) for r in stages if isinstance(r, dict) and r.get("method")})
        body.append(f"- {len(stages)} pruning step{'s' if len(stages) != 1 else ''}"
                    + (f" ({', '.join(methods)})" if methods else ""))
    if isinstance(info.get("recipe"), dict):
        body += ["- the recipe (`pruning.json` `recipe`):", "", "```json",
                 json.dumps(info["recipe"], indent=1, sort_keys=True), "```"]
    if not info:
        body.append("- no `pruning.json`: how this model was made is not recorded")

    body += ["", "## Size", "",
             f"- shape: {shape_text(s['shape'])}"]
    orig = s.get("original") or {}
    if isinstance(orig.get("shape"), dict) and orig["shape"] != s["shape"]:
        body.append(f"- the original's shape: {shape_text(orig['shape'])}")
    body.append(f"- mask_ratio (the course's ratio): {mask:.4f} ({mask_where})")
    body.append(f"- nonzero_ratio (the honest ratio: non-zero weights over its own parameters): {nonzero:.4f} "
                f"({s['nonzero']:,} of {s['dense_params']:,})")
    if "params_vs_original" in s:
        body.append(f"- against the original's {orig['params']:,} parameters ({orig['source']}): "
                    f"parameters {s['params_vs_original']:.4f}, non-zero {s['nonzero_vs_original']:.4f}")
    if vocab:
        body += _vocabulary(vocab)
    files = _files(d)
    body += ["", "| file | bytes |", "|---|---:|", *[f"| {n} | {b:,} |" for n, b in files.items()],
             f"| total | {sum(files.values()):,} |"]

    quality = _quality(info, final)
    if quality:
        body += ["", "## Quality", "", *quality]

    body += ["", "## How to load it", ""]
    from .models import family_of

    if fmt == "compact":
        body += ["transformers cannot read the compact format itself; load it with summprune (it returns a "
                 "transformers model), or export it as `hf` first "
                 "(`python -m summprune export --model DIR --output DIR_HF --format hf`).", ""]
    elif not family_of(model).standard(model.config):
        # its config describes what transformers' own classes cannot build (heads cut where the
        # family ties the head size to d_model / heads): only the family's loader reads it
        body += ["Plain `from_pretrained` cannot build this model (its heads were cut, and transformers ties this "
                 "family's head size to d_model / heads; `head_dim` in config.json holds the real one): load it "
                 "with summprune.", ""]
    else:
        from .io.hf import TOKENIZER_FILES

        has_tokenizer = any(n in files for n in TOKENIZER_FILES)
        body += ["```python", "from transformers import AutoModelForSeq2SeqLM"
                 + (", AutoTokenizer" if has_tokenizer else ""),
                 'model = AutoModelForSeq2SeqLM.from_pretrained("DIR")',
                 *(['tokenizer = AutoTokenizer.from_pretrained("DIR")'] if has_tokenizer else []), "```", ""]
    body += ["```python", "from summprune.export import load_model",
             'model = load_model("DIR")  # every file checked; fp32, eval mode', "```", "",
             "CTranslate2 (converted once, cached):", "", "```",
             "python generate_csv.py --model DIR --data DOCS.csv --engine ctranslate2 --dtype int8", "```", ""]
    return "\n".join(fm + body)


def _vocabulary(v: dict) -> list[str]:
    """The lines on a trimmed vocabulary (``pruning.json`` ``vocabulary``, :mod:`summprune.vocab`)."""
    params = v.get("params") if isinstance(v.get("params"), dict) else {}
    n_docs = v.get("documents")
    lines = [f"- vocabulary trimmed to {v.get('vocab_size'):,} of {v.get('original_vocab_size'):,} tokens: those "
             f"occurring at least {v.get('min_count')} time(s) in "
             + (f"{n_docs:,} training documents" if _num(n_docs) else "the training documents")
             + (f" ({v['source']})" if isinstance(v.get("source"), str) else "")
             + ", every special token, the prefix's and, for BPE, the merges they need; new id -> original id "
               "in `vocab_trim.json`; text outside it is split into kept pieces or read as `<unk>`"]
    if _num(params.get("before")) and _num(params.get("after")):
        lines.append(f"- parameters before / after the trim: {params['before']:,} / {params['after']:,}")
    lines.append("- not for the course's submission: the course's grader loads t5-small's shape (32,128 "
                 "vocabulary rows); the course format refuses a trimmed model")
    return lines


def _quality(info: dict, final: dict) -> list[str]:
    """Lines on the quality before and after pruning, from what the run recorded; none where it
    recorded no score."""
    keys = ("kaggle_score", "rougeLsum")
    q = info.get("quality") if isinstance(info.get("quality"), dict) else {}
    before = q.get("before") if isinstance(q.get("before"), dict) else {}
    after = {k: final[k] for k in keys if _num(final.get(k))}
    before = {k: before[k] for k in keys if _num(before.get(k))}
    if not after and not before:
        return []
    docs = q.get("eval_docs")
    where = (f"on {docs} validation documents" if _num(docs) else "on the run's validation documents") + \
        (f", decoding {json.dumps(q['decoding'], sort_keys=True)}" if isinstance(q.get("decoding"), dict) else "")
    lines = [f"Scored by the run {where}:", "", "| | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    if before:
        lines.append("| before pruning | " + " | ".join(f"{before[k]:.4f}" if k in before else "-" for k in keys) + " |")
    if after:
        lines.append("| after pruning | " + " | ".join(f"{after[k]:.4f}" if k in after else "-" for k in keys) + " |")
    if before and after and all(k in before and k in after for k in keys) and before["kaggle_score"] > 0:
        lines += ["", f"After / before (kaggle_score): {after['kaggle_score'] / before['kaggle_score']:.3f}"]
    return lines


def write_card(d: str | Path, model: nn.Module, fmt: str, dtype: str | None = None,
               pruning_info: dict | None = None) -> Path:
    """Write :func:`model_card` as ``d/README.md`` (``d``: the export's temporary directory, its
    other files already written), atomically."""
    from .io.files import atomic_write

    d = Path(d)
    return atomic_write(d / CARD, model_card(model, d, fmt, dtype, pruning_info))


def card_for_report(model: nn.Module, model_dir: str | Path) -> str:
    """The card ``report --model`` prints: the directory's own README.md where summprune wrote it
    (the card made at export), else one made now from the directory (an older export, a plain
    ``save_pretrained`` directory)."""
    from .io.files import read_json
    from .summary import stored_info

    d = Path(model_dir)
    card = d / CARD
    if card.is_file() and not card.is_symlink():  # a link may point anywhere: not the export's card
        text = card.read_text(encoding="utf-8")
        try:
            ours = TAG in (front_matter(text).get("tags") or [])
        except ValueError:
            ours = False
        if ours:
            return text
    info = read_json(d / "pruning.json") if (d / "pruning.json").is_file() else None
    return model_card(model, d, stored_info(d)["format"], None, info if isinstance(info, dict) else None)

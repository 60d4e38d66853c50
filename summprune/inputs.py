"""What the driver starts from, and the checks that fail before any work.

The data (:func:`load_train_val`), the model and tokenizer (:func:`build_model_and_tokenizer`),
the task prefix they are read with (:func:`resolved_prefix`, :func:`known_prefix`,
:func:`with_prefix`) and :func:`check_model`: the recipe's groups, the input length, the export
format against the family, each naming the option at fault before a folder is written or a
step trained.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from . import data as D
from .config import ExperimentConfig


def load_train_val(cfg_data) -> tuple:
    """Raw (untokenized) train and validation Datasets with text and summary."""
    try:
        train = D.load_split(cfg_data.dataset, cfg_data.train_split, ("text", "summary"),
                             synthetic_docs=cfg_data.synthetic_docs, seed=cfg_data.seed)
    except D.HubError as e:
        raise D.HubError(f"data.dataset={cfg_data.dataset}: {e}, e.g. data.dataset=/data/billsum") from None
    train, val = D.train_val_split(train, cfg_data.val_size, seed=cfg_data.seed)
    if cfg_data.max_train_samples:
        train = train.select(range(min(cfg_data.max_train_samples, len(train))))
    return train, val


def build_model_and_tokenizer(cfg_model, train_texts: list[str] | None = None):
    """(model, tokenizer) by hub name / directory, or the random 'tiny' architecture."""
    from .modeling import build_tiny_model, load_tokenizer

    if cfg_model.name == "tiny":
        if cfg_model.tokenizer:
            tok = load_tokenizer(cfg_model.tokenizer)
        else:
            if not train_texts:
                raise ValueError("model.name='tiny' without model.tokenizer needs training texts "
                                 "to train its tokenizer on")
            from .tokenizer import train_tokenizer

            tok = train_tokenizer(train_texts, vocab_size=cfg_model.tiny_vocab)
        model = build_tiny_model(len(tok), cfg_model.tiny_d_model, cfg_model.tiny_layers,
                                 cfg_model.tiny_heads, cfg_model.tiny_d_ff, family=cfg_model.tiny_family)
        return model, tok
    from .export import load_model

    model = load_model(cfg_model.name)
    tok = load_tokenizer(cfg_model.tokenizer or cfg_model.name)
    return model, tok


def resolved_prefix(prefix: str, model_or_type) -> str:
    """``data.prefix`` as used: 'auto' is the family's convention (``model_or_type``: a model or a
    model_type such as ``model.tiny_family``)."""
    if prefix != "auto":
        return prefix
    from .models import family_of

    return family_of(model_or_type).default_prefix


def known_prefix(cfg: ExperimentConfig, model_dir=None) -> str | None:
    """``data.prefix`` resolved before any model is loaded, where the family is known from
    ``model.tiny_family`` or a model directory's config.json; None where it is not (a hub name)."""
    if cfg.data.prefix != "auto":
        return cfg.data.prefix
    if model_dir is None and cfg.model.name == "tiny":
        return resolved_prefix("auto", cfg.model.tiny_family)
    src = Path(str(model_dir if model_dir is not None else cfg.model.name)).expanduser()
    try:
        return resolved_prefix("auto", str(src)) if src.is_dir() else None
    except ValueError:  # an unsupported model_type: loading it will say so
        return None


def with_prefix(cfg: ExperimentConfig, prefix: str) -> ExperimentConfig:
    """``cfg`` with ``data.prefix`` resolved: what pruning.json records and the data work uses (the
    run folder's config.json keeps the value as given, so a resume compares like with like)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, prefix=prefix))


def check_export_family(cfg: ExperimentConfig, model) -> None:
    """``export_format`` against the family of ``model`` (a model or a model directory), before
    any training: the course format holds T5 models only, and a recipe written for the course
    (configs/gradual_kd.toml) run on a BART is refused here, naming export_format=hf, rather
    than writing a directory the grader cannot read."""
    from .export import family_refusal

    why = family_refusal(cfg.export_format, model)
    if why is not None:
        raise ValueError(f"export_format={cfg.export_format!r}: {why}")


def check_groups(model, cfg: ExperimentConfig) -> None:
    """The recipe's layer groups against this model, before any data or folder is touched: a
    pattern that matches nothing, or a module in two groups, names ``prune.groups``."""
    from .modeling import group_modules
    from .models import family_of

    try:
        group_modules(model, cfg.prune.groups)
    except ValueError as e:
        raise ValueError(f"prune.groups: {e}") from None
    fam = family_of(model)
    limit = fam.max_source_positions(model.config)
    if limit is not None and cfg.data.max_source_length > limit:
        raise ValueError(f"data.max_source_length={cfg.data.max_source_length}: this {fam.name} model reads at most "
                         f"{limit} input tokens (config.json max_position_embeddings)")
    sc = cfg.prune.methods.get("structured")
    if sc is not None and fam.structure is None:
        raise ValueError(f"[prune.structured]: structured pruning is not implemented for {fam.name} models "
                         f"({type(model).__name__}); use [[prune.stages]] or [prune.gradual] for it")
    if sc is not None and not fam.structure.heads and sc.heads_keep != 1:
        raise ValueError(f"prune.structured.heads_keep={sc.heads_keep}: a {fam.name} model's head size is d_model / "
                         "heads, so its heads cannot be cut (blocks and FFN neurons can); use heads_keep=1")


def check_model(model, tokenizer, cfg: ExperimentConfig, prefix: str, where: str, train: bool) -> None:
    """Every check of the model the driver prunes, before any folder is written or step trained:
    the groups and input length (:func:`check_groups`), the resolved ``prefix`` against the input
    length when it will be read, the export format against the family, and, for the course
    format, a tied embedding (``where``: the model, as the message names it)."""
    check_groups(model, cfg)
    if train:
        # checked again by tokenize: a start that fails it must fail before the folder is written,
        # or the corrected rerun finds "another config" there
        D.check_prefix_fits(tokenizer, prefix, cfg.data.max_source_length)
    check_export_family(cfg, model)  # a hub model's family (a directory's was checked with the config)
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if (cfg.export_format == "course" and getattr(model.config, "tie_word_embeddings", False)
            and head is not None and head.weight is not emb.weight):
        raise ValueError(f"{where}: its lm_head is a tensor of its own beside the embedding (a model pruned "
                         "with tie_mode 'course' or 'untie'), which the course format cannot hold once it is pruned "
                         "or trained further; start from the unpruned fine-tuned model, or export 'hf'/'compact'")


def trim_args(cfg, train_raw, prefix: str) -> dict | None:
    """``export_model``'s ``trim`` for a run's export: the training split's texts (with ``prefix``)
    and summaries, where ``export_trim_vocab`` is set; None otherwise."""
    if not cfg.export_trim_vocab:
        return None
    return {"texts": list(train_raw["text"]), "summaries": list(train_raw["summary"]), "prefix": prefix,
            "min_count": cfg.export_trim_min_count, "source": f"the training split of data.dataset={cfg.data.dataset}"}


def trim_spec(dataset: str, model: Any, fmt: str, min_count: int | None = None, prefix: str | None = None) -> dict:
    """The ``trim`` argument of ``export_model`` for ``export --trim-vocab DATASET``: the texts read
    and everything checked before the model is loaded (the format, the count, the data). The
    prefix: ``prefix``, else the model directory's ``pruning.json`` ``data.prefix``, else its
    family's convention."""
    from .vocab import trim_refusal

    why = trim_refusal(fmt, model, trimming=True)
    if why is not None:
        raise ValueError(f"--format {fmt} with --trim-vocab: {why}")
    min_count = 1 if min_count is None else min_count
    if min_count < 1:
        raise ValueError(f"--trim-min-count {min_count}: must be >= 1")
    if prefix is None:
        d = Path(str(model)).expanduser()
        try:
            info = json.loads((d / "pruning.json").read_text(encoding="utf-8"))
            prefix = info["data"]["prefix"]
        except (OSError, ValueError, KeyError, TypeError):
            prefix = None
        if not isinstance(prefix, str) or prefix == "auto":
            from .models import family_of

            prefix = family_of(d if (d / "config.json").is_file() else "t5").default_prefix
    texts, summaries = training_texts(dataset)
    return {"texts": texts, "summaries": summaries, "prefix": prefix, "min_count": min_count, "source": str(dataset)}


def training_texts(dataset: str) -> tuple[list[str], list[str]]:
    """The ``text`` and (where present) ``summary`` columns of ``dataset``'s train split (a local
    file or folder as every command reads data, or a hub name): what a trim keeps the tokens of."""
    from .data import load_split

    ds = load_split(dataset, "train", columns=("text",))
    return list(ds["text"]), list(ds["summary"]) if "summary" in ds.column_names else []

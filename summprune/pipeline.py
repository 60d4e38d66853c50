"""One run: config -> data + model -> fine-tune -> stages (prune, recover, evaluate, log) -> export.

Every step is a function with explicit arguments; ``run`` only wires them and writes the run
folder ``runs/<name>/``: ``config.json`` (resolved), ``metrics.jsonl`` (one record per event),
``summary.json``. Under ``accelerate launch`` every process runs the same code; the Trainer
synchronises training, and only the main process evaluates and writes files.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import PartialState
from transformers import set_seed

from . import data as D
from . import prune as P
from . import sparsity as S
from .config import ExperimentConfig, StageConfig, config_to_dict, expand_stages, save_config
from .train import finetune

PRUNING_FORMAT = "summprune.pruning/1"


# ----------------------------------------------------------------------------- building blocks


def load_train_val(cfg_data) -> tuple:
    """Raw (untokenized) train and validation Datasets with text and summary."""
    train = D.load_split(cfg_data.dataset, cfg_data.train_split, ("text", "summary"),
                         synthetic_docs=cfg_data.synthetic_docs, seed=cfg_data.seed)
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
            from .synthetic import train_tokenizer

            tok = train_tokenizer(train_texts, vocab_size=cfg_model.tiny_vocab)
        model = build_tiny_model(len(tok), cfg_model.tiny_d_model, cfg_model.tiny_layers,
                                 cfg_model.tiny_heads, cfg_model.tiny_d_ff)
        return model, tok
    from .export import load_model

    model = load_model(cfg_model.name)
    tok = load_tokenizer(cfg_model.tokenizer or cfg_model.name)
    return model, tok


def evaluate(model, tokenizer, rows, *, prefix: str, max_source_length: int, max_length: int,
             num_beams: int, batch_size: int, **decoding) -> dict:
    """Generate summaries for ``rows`` (text, summary) and score them (course metric + ROUGE).
    ``decoding``: the other options of ``generate_summaries`` (no_repeat_ngram_size, ...)."""
    from .generate import generate_summaries
    from .metrics import kaggle_score, rouge

    device = str(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    t0 = time.time()
    preds = generate_summaries(model, tokenizer, list(rows["text"]), prefix=prefix,
                               max_source_length=max_source_length, max_length=max_length,
                               num_beams=num_beams, batch_size=batch_size, device=device,
                               progress=False, **decoding)
    model.train(was_training)
    texts = [preds[i] for i in range(len(rows))]
    refs = list(rows["summary"])
    out = {"kaggle_score": kaggle_score(texts, refs), **rouge(texts, refs),
           "eval_docs": len(refs), "eval_s": round(time.time() - t0, 2)}
    out["example"] = texts[0][:300]
    # a small model that collapses emits EOS first: empty summaries, the usual cause of a score near 0
    out["empty"] = sum(not t.strip() for t in texts)
    return out


def append_jsonl(path: str | Path, record: dict) -> None:
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def stage_record(model, patterns) -> dict:
    rep = S.report(model, patterns)
    return {"mask_ratio": rep["mask_ratio"], "nonzero_ratio": rep["nonzero_ratio"],
            "nonzero": rep["nonzero"], "dense_params": rep["dense_params"], "groups": rep["groups"]}


def apply_recipe(model, stages: list[StageConfig], *, tie_mode: str, patterns: dict[str, str] | None,
                 recover: Callable[[StageConfig, int], dict] | None = None,
                 evaluate_fn: Callable[[], dict] | None = None,
                 log: Callable[[dict], None] | None = None) -> list[dict]:
    """Prune ``model`` stage by stage (``repeat`` unrolled); returns one record per stage.

    ``recover(stage, index)`` runs recovery fine-tuning if the stage asks for it; ``evaluate_fn``
    scores the model after each stage. Both are optional so that counts can be checked alone.
    """
    P.prepare_model(model, tie_mode)
    records = []
    for i, st in enumerate(expand_stages(stages)):
        t0 = time.time()
        P.apply_stage(model, st.amounts, patterns, tie_mode)
        rec = {"event": "stage", "stage": i + 1, "amounts": dict(st.amounts)}
        if recover is not None and (st.recover_epochs > 0 or st.recover_steps > 0):
            rec["recovery"] = recover(st, i + 1)
        rec.update(stage_record(model, patterns))
        if evaluate_fn is not None:
            rec.update(evaluate_fn())
        rec["stage_s"] = round(time.time() - t0, 2)
        records.append(rec)
        if log:
            log(rec)
    return records


def run_gradual_recipe(model, tokenizer, cfg: ExperimentConfig, train_ds=None, val_ds=None, *,
                       output_dir: str | Path = "runs/gradual-trainer", metrics_path: str | Path | None = None,
                       evaluate_fn: Callable[[], dict] | None = None, log: Callable[[dict], None] | None = None,
                       log_print: Callable[[str], None] = print, state=None) -> tuple[list[dict], dict]:
    """``[prune.gradual]``: prune to the target honest ratio with recovery (and distillation from a
    frozen copy of the model as it is now, if ``distill_alpha < 1``) on ``train_ds``; ``val_ds``
    (tokenized) gives the validation loss for ``allocation='auto'``. Without ``train_ds`` no
    recovery runs (counts only). Returns ``(records, plan)``; the plan goes into pruning.json."""
    from .gradual import run_gradual
    from .train import validation_loss

    gr = cfg.prune.gradual
    teacher = None
    if gr.distill_alpha < 1.0 and train_ds is not None:
        teacher = copy.deepcopy(model).eval()
        teacher.requires_grad_(False)
    train_cfg = dataclasses.replace(cfg.train, learning_rate=gr.learning_rate) if gr.learning_rate else cfg.train

    def recover(idx: int, steps: int, epochs: float, last: bool) -> dict:
        log_print(f"gradual step {idx}: recovery fine-tuning ({steps} steps)" if steps
                  else f"gradual step {idx}: recovery fine-tuning ({epochs} epochs)")
        kw: dict = {}
        if teacher is not None:
            from .distill import DistillationTrainer

            kw = {"trainer_cls": DistillationTrainer,
                  "trainer_kwargs": {"teacher": teacher, "alpha": gr.distill_alpha,
                                     "temperature": gr.distill_temperature}}
        # a new seed per step: step-limited recoveries would otherwise all see the same batches
        m = finetune(model, tokenizer, train_ds, dataclasses.replace(train_cfg, seed=train_cfg.seed + idx),
                     output_dir, epochs=epochs,
                     max_steps=steps if steps > 0 else -1, log_path=metrics_path,
                     stage=f"recover-{idx}", **kw)
        return {k: v for k, v in m.items() if isinstance(v, (int, float))}

    loss_fn = None
    if gr.allocation == "auto":
        if val_ds is None:
            raise ValueError("prune.gradual.allocation='auto' measures validation loss: it needs data "
                             "(not available with --no-train)")
        sub = val_ds.select(range(min(gr.sensitivity_docs, len(val_ds))))
        loss_fn = lambda: validation_loss(model, tokenizer, sub, batch_size=cfg.train.eval_batch_size)  # noqa: E731
    sync = None
    if state is not None and state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        sync = lambda obj: broadcast_object_list([obj])[0]  # noqa: E731
    try:
        return run_gradual(model, gr, tie_mode=cfg.prune.tie_mode, patterns=cfg.prune.groups,
                           recover=recover if train_ds is not None else None, evaluate_fn=evaluate_fn,
                           log=log, loss_fn=loss_fn, sync=sync, log_print=log_print)
    finally:
        del teacher


def run_structured(model, tokenizer, cfg: ExperimentConfig, train_ds=None, *,
                   output_dir: str | Path = "runs/structured-trainer", metrics_path: str | Path | None = None,
                   log_print: Callable[[str], None] = print, state=None) -> tuple[torch.nn.Module, dict]:
    """``[prune.structured]``: score neurons and heads, build the smaller model, and fine-tune it
    on ``train_ds`` (distilling from ``model`` as it was, if ``distill_alpha < 1``). Returns
    ``(smaller model, info)``; ``model`` keeps its weights (it becomes the frozen teacher when
    distilling). Under several processes the main process's plan is used by all. Without ``train_ds`` only
    weight-norm importance works and no recovery runs."""
    from .structured import describe, importance_batches, shrink

    sc = cfg.prune.structured
    batches = None
    if sc.importance == "taylor":
        if train_ds is None:
            raise ValueError("prune.structured.importance='taylor' needs training data (not available with "
                             "--no-train); use importance='weight'")
        batches = importance_batches(model, tokenizer, train_ds, sc.importance_batches, cfg.train.batch_size)
    before, params_before = describe(model), S.dense_param_count(model)
    sync = None
    if state is not None and state.num_processes > 1:
        # every process scores the same batches, but a near-tie at the cut could still fall
        # differently on different GPUs: all must build the same shape for DDP
        from accelerate.utils import broadcast_object_list

        sync = lambda plan: broadcast_object_list([plan])[0]  # noqa: E731
    small, plan = shrink(model, importance=sc.importance, batches=batches, ffn_keep=sc.ffn_keep,
                         heads_keep=sc.heads_keep, encoder_layers=sc.encoder_layers,
                         decoder_layers=sc.decoder_layers, layer_selection=sc.layer_selection, sync=sync)
    log_print(f"structured: {before} -> {describe(small)}")
    recovery: dict = {}
    if train_ds is not None and (sc.recover_steps > 0 or sc.recover_epochs > 0):
        kw: dict = {}
        if sc.distill_alpha < 1.0:
            from .distill import DistillationTrainer

            model.eval().requires_grad_(False)  # the model before removal is the teacher
            kw = {"trainer_cls": DistillationTrainer,
                  "trainer_kwargs": {"teacher": model, "alpha": sc.distill_alpha,
                                     "temperature": sc.distill_temperature}}
        train_cfg = dataclasses.replace(cfg.train, learning_rate=sc.learning_rate) if sc.learning_rate else cfg.train
        log_print(f"structured: recovery fine-tuning ({sc.recover_steps} steps)" if sc.recover_steps
                  else f"structured: recovery fine-tuning ({sc.recover_epochs} epochs)")
        m = finetune(small, tokenizer, train_ds, train_cfg, output_dir, epochs=sc.recover_epochs,
                     max_steps=sc.recover_steps or None, log_path=metrics_path, stage="structured-recover", **kw)
        recovery = {k: v for k, v in m.items() if isinstance(v, (int, float))}
    small.eval()
    info = {"plan": plan.to_dict(), "before": before, "after": describe(small), "params_before": params_before,
            "params_after": S.dense_param_count(small), "importance": sc.importance, "recovery": recovery}
    return small, info


def pruning_info(cfg: ExperimentConfig, records: list[dict], final: dict, *, gradual: dict | None = None,
                 structured: dict | None = None) -> dict:
    """What ``pruning.json`` holds: the recipe, one entry per stage, the final model, and the
    gradual plan / structured removal when they ran. After a structured removal ``final`` also
    gets ``nonzero_ratio_vs_original``: its non-zeros over the parameters of the model it was cut
    from (its own ratios count against the smaller shape)."""
    keep = ("stage", "amounts", "mask_ratio", "nonzero_ratio", "nonzero", "dense_params", "groups",
            "kaggle_score", "rougeLsum")
    info = {
        "format": PRUNING_FORMAT,
        "tie_mode": cfg.prune.tie_mode,
        "recipe": config_to_dict(cfg.prune),
        "stages": [{k: r[k] for k in keep if k in r} for r in records],
        "final": final,
    }
    if gradual is not None:
        info["gradual"] = gradual
    if structured is not None:
        info["structured"] = structured
        final["nonzero_ratio_vs_original"] = final["nonzero"] / structured["params_before"]
    return info


def export(model, tokenizer, out_dir: str | Path, info: dict, fmt: str = "hf", dtype: str = "fp32",
           decoding: dict | None = None) -> Path:
    """Export in ``fmt``; ``decoding`` (the run's eval decoding) goes into the model's
    generation_config.json, where generate_csv.py takes its defaults from."""
    from .export import export_model
    from .generate import set_decoding

    if decoding is not None:
        set_decoding(model.generation_config, decoding)
    return export_model(model, out_dir, format=fmt, dtype=dtype, tokenizer=tokenizer, pruning_info=info)


def _fingerprint(*parts) -> str:
    blob = json.dumps([dataclasses.asdict(p) for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the run


def run(cfg: ExperimentConfig, *, log_print: Callable[[str], None] = print) -> dict:
    """The whole pipeline for one config; returns the summary written to runs/<name>/."""
    state = PartialState()
    main = state.is_main_process
    run_dir = Path(cfg.runs_dir) / cfg.name
    metrics_path = run_dir / "metrics.jsonl"
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.json")
        metrics_path.write_text("", encoding="utf-8")  # a run's metrics start fresh
    state.wait_for_everyone()
    t_start = time.time()
    set_seed(cfg.train.seed)

    def log(rec: dict) -> None:
        if main:
            append_jsonl(metrics_path, {**rec, "t": round(time.time() - t_start, 2)})

    train_raw, val_raw = load_train_val(cfg.data)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    # The on-the-fly tokenizer (tiny model) sees inputs exactly as the model will, prefix included.
    model, tok = build_model_and_tokenizer(
        cfg.model, [cfg.data.prefix + t for t in train_raw["text"]] + list(train_raw["summary"]))
    if torch.cuda.is_available():
        model.to(state.device)
    tokenize = lambda ds: D.tokenize(ds, tok, cfg.data.prefix, cfg.data.max_source_length,
                                     cfg.data.max_target_length)
    train_ds = tokenize(train_raw)
    eval_rows = val_raw.select(range(min(cfg.eval.docs, len(val_raw))))

    def evaluate_fn() -> dict:
        res = {}
        if main:
            res = evaluate(model, tok, eval_rows, prefix=cfg.data.prefix,
                           max_source_length=cfg.data.max_source_length, batch_size=cfg.eval.batch_size,
                           **cfg.eval.decoding())
            log_print(f"  kaggle={res['kaggle_score']:.4f} rougeLsum={res['rougeLsum']:.4f} "
                      f"({res['eval_docs']} validation docs)")
        state.wait_for_everyone()
        return res

    log_print(f"[{cfg.name}] {len(train_raw)} train / {len(val_raw)} validation documents; "
              f"{S.dense_param_count(model):,} parameters")
    initial = evaluate_fn()
    log({"event": "initial", **initial, **stage_record(model, cfg.prune.groups)})

    # Fine-tune, or reuse the fine-tuned checkpoint of an identical earlier run (hours on t5-small).
    ft_dir = run_dir / "finetuned"
    fp = _fingerprint(cfg.data, cfg.model, cfg.train)
    if cfg.finetune:
        stamp = ft_dir / "fingerprint.txt"
        if stamp.is_file() and stamp.read_text().strip() == fp:
            from .export import load_model

            log_print(f"[{cfg.name}] reusing fine-tuned model in {ft_dir}")
            model = load_model(ft_dir)
            if torch.cuda.is_available():
                model.to(state.device)
            log({"event": "finetune", "reused": str(ft_dir)})
        else:
            log_print(f"[{cfg.name}] fine-tuning")
            m = finetune(
                model, tok, train_ds, cfg.train, run_dir / "trainer", log_path=metrics_path, stage="finetune")
            if main:
                from .export import save_hf

                save_hf(model, ft_dir, tokenizer=tok)
                stamp.write_text(fp + "\n")
            state.wait_for_everyone()
            log({"event": "finetune", **{k: v for k, v in m.items() if isinstance(v, (int, float))}})
        finetuned = evaluate_fn()
        log({"event": "finetuned", **finetuned, **stage_record(model, cfg.prune.groups)})
    else:
        finetuned = initial

    def recover(st: StageConfig, idx: int) -> dict:
        log_print(f"[{cfg.name}] stage {idx}: recovery fine-tuning")
        m = finetune(model, tok, train_ds, cfg.train, run_dir / "trainer",
                     epochs=st.recover_epochs, max_steps=st.recover_steps or None,
                     log_path=metrics_path, stage=f"recover-{idx}")
        return {k: v for k, v in m.items() if isinstance(v, (int, float))}

    def log_stage(rec: dict) -> None:
        log_print(f"[{cfg.name}] stage {rec['stage']}: mask_ratio={rec['mask_ratio']:.4f} "
                  f"nonzero_ratio={rec['nonzero_ratio']:.4f}")
        log(rec)

    structure = None
    if cfg.prune.structured is not None:
        model, structure = run_structured(model, tok, cfg, train_ds, output_dir=run_dir / "trainer",
                                          metrics_path=metrics_path, log_print=log_print, state=state)
        res = evaluate_fn()
        log({"event": "structured", **res, **{k: structure[k] for k in ("before", "after", "params_before",
                                                                        "params_after")},
             **stage_record(model, cfg.prune.groups)})

    plan = None
    if cfg.prune.gradual is not None:
        val_ds = tokenize(val_raw) if cfg.prune.gradual.allocation == "auto" else None
        records, plan = run_gradual_recipe(
            model, tok, cfg, train_ds, val_ds, output_dir=run_dir / "trainer", metrics_path=metrics_path,
            evaluate_fn=evaluate_fn, log=log_stage, log_print=log_print, state=state)
    else:
        records = apply_recipe(model, cfg.prune.stages, tie_mode=cfg.prune.tie_mode,
                               patterns=cfg.prune.groups, recover=recover, evaluate_fn=evaluate_fn,
                               log=log_stage)
    final = stage_record(model, cfg.prune.groups)
    if records:
        final.update({k: records[-1][k] for k in ("kaggle_score", "rougeLsum") if k in records[-1]})
    info = pruning_info(cfg, records, final, gradual=plan, structured=structure)
    summary = {}
    if main:
        out = export(model.to("cpu"), tok, cfg.output_dir, info, cfg.export_format, cfg.export_dtype,
                     decoding=cfg.eval.decoding())
        summary = {
            "name": cfg.name,
            "model_dir": str(out),
            "initial": {k: initial.get(k) for k in ("kaggle_score", "rougeLsum")},
            "finetuned": {k: finetuned.get(k) for k in ("kaggle_score", "rougeLsum")},
            "final": {k: final.get(k) for k in ("kaggle_score", "rougeLsum", "mask_ratio", "nonzero_ratio",
                                                "nonzero_ratio_vs_original") if k in final},
            "wall_s": round(time.time() - t_start, 1),
        }
        log({"event": "export", "model_dir": str(out)})
        tmp = run_dir / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, run_dir / "summary.json")
        log_print(f"[{cfg.name}] done in {summary['wall_s']} s; model in {out}; run folder {run_dir}")
    state.wait_for_everyone()
    return summary


def prune_existing(model_dir: str | Path, cfg: ExperimentConfig, output: str | Path, *, train: bool = True,
                   log_print: Callable[[str], None] = print) -> dict:
    """Apply ``cfg``'s recipe to a saved model and export it; returns the pruning info.

    With ``train=False`` no fine-tuning runs and no data is read: the counts can be checked on
    any model of the right shape in seconds.
    """
    from .export import load_model
    from .modeling import load_tokenizer

    model = load_model(model_dir)
    tok = load_tokenizer(model_dir)
    recover = None
    train_ds = val_raw = None
    if train:
        train_raw, val_raw = load_train_val(cfg.data)
        train_ds = D.tokenize(train_raw, tok, cfg.data.prefix, cfg.data.max_source_length,
                              cfg.data.max_target_length)

        def recover(st: StageConfig, idx: int) -> dict:
            return finetune(model, tok, train_ds, cfg.train, Path(output).with_suffix(".trainer"),
                            epochs=st.recover_epochs, max_steps=st.recover_steps or None,
                            stage=f"recover-{idx}")

    def log_stage(rec: dict) -> None:
        log_print(f"stage {rec['stage']}: mask_ratio={rec['mask_ratio']:.4f} "
                  f"nonzero_ratio={rec['nonzero_ratio']:.4f}")

    structure = None
    if cfg.prune.structured is not None:
        model, structure = run_structured(model, tok, cfg, train_ds,
                                          output_dir=Path(output).with_suffix(".trainer"), log_print=log_print)

    plan = None
    if cfg.prune.gradual is not None:
        val_ds = None
        if val_raw is not None and cfg.prune.gradual.allocation == "auto":
            val_ds = D.tokenize(val_raw, tok, cfg.data.prefix, cfg.data.max_source_length,
                                cfg.data.max_target_length)
        records, plan = run_gradual_recipe(model, tok, cfg, train_ds, val_ds,
                                           output_dir=Path(output).with_suffix(".trainer"),
                                           log=log_stage, log_print=log_print)
    else:
        records = apply_recipe(model, cfg.prune.stages, tie_mode=cfg.prune.tie_mode, patterns=cfg.prune.groups,
                               recover=recover, log=log_stage)
    final = stage_record(model, cfg.prune.groups)
    info = pruning_info(cfg, records, final, gradual=plan, structured=structure)
    export(model, tok, output, info, cfg.export_format, cfg.export_dtype, decoding=cfg.eval.decoding())
    return info

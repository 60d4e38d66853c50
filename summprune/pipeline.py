"""One run: config -> data + model -> fine-tune -> methods (prune, recover, evaluate, log) -> export.

``prune_model`` is the one pruning driver: ``run``, ``prune_existing`` and the benchmarks call it;
each method is a ``summprune.methods`` class behind one interface. Every step is a function with
explicit arguments; ``run`` only wires them and writes the run
folder ``runs/<name>/``: ``config.json`` (resolved), ``metrics.jsonl`` (one record per event),
``summary.json``. Under ``accelerate launch`` every process runs the same code; the Trainer
synchronises training, and only the main process evaluates and writes files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import PartialState
from transformers import set_seed

from . import data as D
from . import sparsity as S
from .config import ExperimentConfig, config_to_dict, save_config
from .evaluation import evaluate
from .io.files import atomic_write_json
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
            from .tokenizer import train_tokenizer

            tok = train_tokenizer(train_texts, vocab_size=cfg_model.tiny_vocab)
        model = build_tiny_model(len(tok), cfg_model.tiny_d_model, cfg_model.tiny_layers,
                                 cfg_model.tiny_heads, cfg_model.tiny_d_ff)
        return model, tok
    from .export import load_model

    model = load_model(cfg_model.name)
    tok = load_tokenizer(cfg_model.tokenizer or cfg_model.name)
    return model, tok


def append_jsonl(path: str | Path, record: dict) -> None:
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def stage_record(model, patterns) -> dict:
    rep = S.report(model, patterns)
    return {"mask_ratio": rep["mask_ratio"], "nonzero_ratio": rep["nonzero_ratio"],
            "nonzero": rep["nonzero"], "dense_params": rep["dense_params"], "groups": rep["groups"]}


def _broadcaster(state):
    """``sync(obj)``: the main process's ``obj`` on every process (identity with one process)."""
    if state is None or state.num_processes == 1:
        return lambda obj: obj
    from accelerate.utils import broadcast_object_list

    return lambda obj: broadcast_object_list([obj])[0]


def prune_model(model, tokenizer, cfg: ExperimentConfig, *, train_ds=None, val_ds=None, state=None,
                work_dir: str | Path = "runs/prune", metrics_path: str | Path | None = None,
                evaluate_fn: Callable[[torch.nn.Module], dict] | None = None,
                log: Callable[[dict], None] | None = None, cache: dict | None = None,
                log_print: Callable[[str], None] = print) -> tuple[torch.nn.Module, list[dict], dict]:
    """The one pruning driver: run the config's methods in order (summprune.methods), each
    step = apply, recover, record the ratios, evaluate, log.

    ``train_ds``/``val_ds`` (tokenized) feed recovery, Taylor importance and sensitivities; without
    ``train_ds`` nothing is trained (counts only). Every plan is made on the main process and
    broadcast (``state``: accelerate's ``PartialState``), so all processes cut the same weights;
    the frozen teacher, the model as it is now, is built once if any recovery distils. Returns
    ``(model, records, sections)``: the model (a new object after a structural method), one record
    per step, and what each method keeps for ``pruning.json``. ``cache`` holds measurements a
    method may reuse (see ``summprune.methods.base.Context.cache``).
    """
    from .methods import Context, build_methods
    from .recovery import make_teacher, recover

    methods = build_methods(cfg.prune)
    main = state is None or state.is_main_process
    sync = _broadcaster(state)
    ctx = Context(tokenizer=tokenizer, train_ds=train_ds, val_ds=val_ds, train_cfg=cfg.train, log_print=log_print,
                  cache=cache if cache is not None else {})
    teacher = make_teacher(model) if train_ds is not None and any(m.distills() for m in methods) else None
    records: list[dict] = []
    sections: dict = {}
    n = 0
    try:
        for method in methods:
            method.prepare(model)
            plan = sync(method.plan(model, ctx) if main else None)
            for step in method.steps(plan):
                n += 1
                t0 = time.time()
                model, rec = method.apply(model, step, ctx)
                rec = {"event": "stage", "stage": n, "method": method.name, **rec}
                if step.recovery is not None and train_ds is not None:
                    rc = step.recovery
                    log_print(f"[{cfg.name}] step {n} ({method.name}): recovery fine-tuning "
                              + (f"({rc.recover_steps} steps)" if rc.recover_steps else f"({rc.recover_epochs} epochs)"))
                    rec["recovery"] = recover(model, tokenizer, train_ds, cfg.train, rc, teacher=teacher,
                                              seed_offset=n, output_dir=Path(work_dir) / "trainer",
                                              log_path=metrics_path, stage=f"recover-{n}")
                rec.update(stage_record(model, cfg.prune.groups))
                if evaluate_fn is not None and step.evaluate:
                    rec.update(evaluate_fn(model))
                rec["stage_s"] = round(time.time() - t0, 2)
                records.append(rec)
                log_print(f"[{cfg.name}] step {n} ({method.name}): mask_ratio={rec['mask_ratio']:.4f} "
                          f"nonzero_ratio={rec['nonzero_ratio']:.4f}")
                if log is not None:
                    log(rec)
            info = method.record(plan)
            if info is not None:
                sections[method.name] = info
    finally:
        del teacher
    return model, records, sections


def pruning_info(cfg: ExperimentConfig, records: list[dict], final: dict, sections: dict | None = None) -> dict:
    """What ``pruning.json`` holds: the recipe, one entry per step, the final model, and what
    each method recorded (the gradual plan under ``gradual``, the removal under ``structured``).
    After a structured removal ``final`` also gets ``nonzero_ratio_vs_original``: its non-zeros
    over the parameters of the model it was cut from (its own ratios count against the smaller
    shape)."""
    keep = ("stage", "method", "amounts", "mask_ratio", "nonzero_ratio", "nonzero", "dense_params", "groups",
            "kaggle_score", "rougeLsum")
    info = {
        "format": PRUNING_FORMAT,
        "tie_mode": cfg.prune.tie_mode,
        "recipe": config_to_dict(cfg.prune),
        "stages": [{k: r[k] for k in keep if k in r} for r in records],
        "final": final,
        # how the model reads its input: generate_csv.py's defaults for --prefix/--max-source-length
        "data": {"prefix": cfg.data.prefix, "max_source_length": cfg.data.max_source_length},
        **(sections or {}),
    }
    if "structured" in info:
        final["nonzero_ratio_vs_original"] = final["nonzero"] / info["structured"]["params_before"]
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
    """The whole pipeline for one config; returns the summary written to runs/<name>/. The run
    folder is locked while it runs: a second ``run`` of the same name is refused, naming the pid
    of the first (a lock left by a killed run is taken over)."""
    from .io.files import check_output, lock_file

    # Everything that can fail at the start fails before the run folder is touched and before
    # any training: the output path (checked again at export), the data, the model.
    check_output(cfg.output_dir)
    state = PartialState()
    if not state.is_main_process:
        return _run(cfg, state, log_print)
    runs = Path(cfg.runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    with lock_file(runs / f".{cfg.name}.lock", f"run folder {runs / cfg.name}"):
        return _run(cfg, state, log_print)


def _run(cfg: ExperimentConfig, state, log_print: Callable[[str], None]) -> dict:
    main = state.is_main_process
    run_dir = Path(cfg.runs_dir) / cfg.name
    metrics_path = run_dir / "metrics.jsonl"
    t_start = time.time()
    set_seed(cfg.train.seed)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir}: exists and is not a directory (runs_dir/name of this run)")
    train_raw, val_raw = load_train_val(cfg.data)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    # The on-the-fly tokenizer (tiny model) sees inputs exactly as the model will, prefix included.
    model, tok = build_model_and_tokenizer(
        cfg.model, [cfg.data.prefix + t for t in train_raw["text"]] + list(train_raw["summary"]))
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.json")
        metrics_path.write_text("", encoding="utf-8")  # a run's metrics start fresh
    state.wait_for_everyone()

    def log(rec: dict) -> None:
        if main:
            append_jsonl(metrics_path, {**rec, "t": round(time.time() - t_start, 2)})
    if torch.cuda.is_available():
        model.to(state.device)
    tokenize = lambda ds: D.tokenize(ds, tok, cfg.data.prefix, cfg.data.max_source_length,
                                     cfg.data.max_target_length)
    train_ds = tokenize(train_raw)
    eval_rows = val_raw.select(range(min(cfg.eval.docs, len(val_raw))))

    def evaluate_fn(model) -> dict:
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
    initial = evaluate_fn(model)
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
        finetuned = evaluate_fn(model)
        log({"event": "finetuned", **finetuned, **stage_record(model, cfg.prune.groups)})
    else:
        finetuned = initial

    model, records, sections = prune_model(
        model, tok, cfg, train_ds=train_ds, val_ds=tokenize(val_raw), state=state, work_dir=run_dir,
        metrics_path=metrics_path, evaluate_fn=evaluate_fn, log=log, log_print=log_print)
    final = stage_record(model, cfg.prune.groups)
    if records:
        final.update({k: records[-1][k] for k in ("kaggle_score", "rougeLsum") if k in records[-1]})
    info = pruning_info(cfg, records, final, sections)
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
        atomic_write_json(run_dir / "summary.json", summary)
        log_print(f"[{cfg.name}] done in {summary['wall_s']} s; model in {out}; run folder {run_dir}")
    state.wait_for_everyone()
    return summary


def prune_existing(model_dir: str | Path, cfg: ExperimentConfig, output: str | Path, *, train: bool = True,
                   log_print: Callable[[str], None] = print) -> dict:
    """Apply ``cfg``'s recipe to a saved model (any format, a course directory included) and
    export it; returns the pruning info. The same driver as ``run`` (plans broadcast under
    several processes; only the main process writes): ``<output>.trainer/`` gets the Trainer's
    files and ``metrics.jsonl``.

    With ``train=False`` no fine-tuning runs and no data is read: the counts can be checked on
    any model of the right shape in seconds.
    """
    from .export import load_model
    from .modeling import load_tokenizer

    from .io.files import check_output

    check_output(output)  # before any pruning or training, not only at export
    state = PartialState()
    main = state.is_main_process
    work_dir = Path(str(output) + ".trainer")
    metrics_path = work_dir / "metrics.jsonl" if train else None
    model = load_model(model_dir)
    tok = load_tokenizer(model_dir)
    if torch.cuda.is_available():
        model.to(state.device)
    train_ds = val_ds = None
    if train:
        train_raw, val_raw = load_train_val(cfg.data)
        train_ds, val_ds = (D.tokenize(x, tok, cfg.data.prefix, cfg.data.max_source_length, cfg.data.max_target_length)
                            for x in (train_raw, val_raw))
        if main:
            work_dir.mkdir(parents=True, exist_ok=True)
            metrics_path.write_text("", encoding="utf-8")
        state.wait_for_everyone()

    def log(rec: dict) -> None:
        if main and metrics_path is not None:
            append_jsonl(metrics_path, rec)

    model, records, sections = prune_model(model, tok, cfg, train_ds=train_ds, val_ds=val_ds, state=state,
                                           work_dir=work_dir, metrics_path=metrics_path, log=log,
                                           log_print=log_print if main else (lambda _msg: None))
    final = stage_record(model, cfg.prune.groups)
    info = pruning_info(cfg, records, final, sections)
    if main:
        export(model.to("cpu"), tok, output, info, cfg.export_format, cfg.export_dtype, decoding=cfg.eval.decoding())
    state.wait_for_everyone()
    return info

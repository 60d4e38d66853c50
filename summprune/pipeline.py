"""The driver: config -> data + model -> fine-tune -> methods (prune, recover, evaluate, log) -> export.

``prune_model`` runs a recipe's methods (``summprune.methods``, one interface); the benchmarks call
it directly. ``run`` and ``prune_existing`` are two entry points to one path, :func:`_drive` (load,
check, tokenize, prune, record, export); a :class:`Job` says what differs: where the model comes
from, which work folder keeps the work (:mod:`summprune.workdir`), what runs before pruning (``run``
evaluates and fine-tunes). Step checkpoints: :mod:`summprune.checkpoints`; the checks before any
work: :mod:`summprune.inputs`. Under ``accelerate launch`` every process runs the same code; the
Trainer synchronises training, and only the main process evaluates and writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import PartialState
from transformers import set_seed

from . import data as D
from . import sparsity as S
from .checkpoints import check_resume_info, json_plan, load_step, save_step
from .config import ExperimentConfig, config_to_dict
from .evaluation import evaluator
from .inputs import (build_model_and_tokenizer, check_export_family, check_model, known_prefix, load_train_val,
                     resolved_prefix, trim_args, with_prefix)
from .io.files import atomic_write_json
from .record import log_summary, pruning_info, stage_record
from .train import check_train_config, finetune
from .workdir import PruneWork, RunFolder, WorkFolder, prune_request


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
                checkpoint_dir: str | Path | None = None, checkpoint_owner: dict | None = None,
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

    With ``checkpoint_dir``, the pruned state is saved after every completed step
    (:func:`save_step`), and a start that finds a checkpoint there goes on after its step: a run
    killed anywhere loses at most the step in progress, and ends with the same counts.
    ``checkpoint_owner`` (JSON: what the folder was asked to do) is recorded with every step and
    a step recording another one is refused (:func:`load_step`).
    """
    from .methods import Context, build_methods
    from .recovery import make_teacher, recover

    methods = build_methods(cfg.prune)
    main = state is None or state.is_main_process
    sync = _broadcaster(state)
    ctx = Context(tokenizer=tokenizer, train_ds=train_ds, val_ds=val_ds, train_cfg=cfg.train, log_print=log_print,
                  cache=cache if cache is not None else {})
    original_params = S.dense_param_count(model)  # before a resume replaces it: the model pruning starts from
    teacher = make_teacher(model) if train_ds is not None and any(m.distills() for m in methods) else None
    records: list[dict] = []
    sections: dict = {}
    n = 0
    resume = (load_step(checkpoint_dir, cfg.prune.tie_mode, checkpoint_owner, note=log_print)
              if checkpoint_dir is not None else None)
    if resume is not None:
        check_resume_info(resume[1], methods, checkpoint_dir)
        device = next(model.parameters()).device
        model, info = resume
        model.to(device)
        records, sections, n = info["records"], info["sections"], info["step"]
        log_print(f"[{cfg.name}] resuming after step {n} ({methods[info['method']].name} step {info['method_step']}) "
                  f"from {checkpoint_dir}")
    try:
        for mi, method in enumerate(methods):
            if resume is not None and mi < resume[1]["method"]:
                continue
            method.prepare(model)
            if resume is not None and mi == resume[1]["method"]:
                plan, done = resume[1]["plan"], resume[1]["method_step"]
            else:
                plan, done = sync(method.plan(model, ctx) if main else None), 0
            steps = method.steps(plan)
            for step in steps[done:]:
                n += 1
                t0 = time.time()
                model, rec = method.apply(model, step, ctx)
                rec = {"event": "stage", "stage": n, "method": method.name, **rec}
                if step.recovery is not None and train_ds is not None:
                    rc = step.recovery
                    log_print(f"[{cfg.name}] step {n} ({method.name}): recovery fine-tuning "
                              + (f"({rc.recover_steps} steps)" if rc.recover_steps else f"({rc.recover_epochs} epochs)"))
                    rec["recovery"] = recover(model, tokenizer, train_ds, cfg.train, rc, teacher=teacher,
                                              seed_offset=n, output_dir=Path(work_dir) / "trainer" / f"recover-{n}",
                                              log_path=metrics_path, stage=f"recover-{n}")
                rec.update(stage_record(model, cfg.prune.groups))
                if evaluate_fn is not None and step.evaluate:
                    rec.update(evaluate_fn(model))
                rec["stage_s"] = round(time.time() - t0, 2)
                records.append(rec)
                log_print(f"[{cfg.name}] step {n} ({method.name}): mask_ratio={rec['mask_ratio']:.4f} "
                          f"nonzero_ratio={rec['nonzero_ratio']:.4f}"
                          # a structural cut leaves both at 1.0 (they count against its own size): say what it cut
                          + (f" params={rec['dense_params']:,} of the original's {original_params:,} "
                             f"(nonzero {rec['nonzero'] / original_params:.4f} of the original's)"
                             if rec["dense_params"] != original_params else ""))
                if log is not None:
                    log(rec)
                if step is steps[-1]:
                    info = method.record(plan)
                    if info is not None:
                        sections[method.name] = info
                if checkpoint_dir is not None:
                    if main:
                        save_step(checkpoint_dir, model, {"step": n, "method": mi, "method_step": step.index,
                                                          "plan": json_plan(plan), "records": records,
                                                          "sections": sections}, owner=checkpoint_owner)
                    if state is not None:
                        state.wait_for_everyone()
    finally:
        del teacher
    return model, records, sections


def export(model, tokenizer, out_dir: str | Path, info: dict, fmt: str = "hf", dtype: str = "fp32",
           decoding: dict | None = None, trim: dict | None = None) -> Path:
    """Export in ``fmt``; ``decoding`` (the run's eval decoding) goes into the model's
    generation_config.json, where generate_csv.py takes its defaults from; ``trim``: the
    vocabulary trimmed on the way (:func:`trim_args`)."""
    from .export import export_model
    from .generate import set_decoding

    if decoding is not None:
        set_decoding(model.generation_config, decoding)
    return export_model(model, out_dir, format=fmt, dtype=dtype, tokenizer=tokenizer, pruning_info=info, trim=trim)


@dataclasses.dataclass
class Job:
    """What an entry point asks of :func:`_drive`: ``load(raw)`` gives the model and tokenizer
    (``raw``: the train and validation rows, None without training or a trim); ``folder`` keeps the work
    (None: nothing trained, nothing kept); ``owner`` is recorded with each step checkpoint;
    ``before_prune(model, tokenizer, dcfg, train_ds, evaluate_fn, log, resuming)`` returns the model to
    prune and the scores before pruning (or None); ``source``: that model, as the log names it."""

    kind: tuple[str, str]  # "continuing the <run> in <folder> (same <config>)"
    load: Callable
    out: str | Path
    folder: WorkFolder | None
    owner: dict | None
    source: str
    base_model: str | None
    evaluate: bool = False
    before_prune: Callable | None = None


def _drive(cfg: ExperimentConfig, state, job: Job, overwrite: bool, log_print: Callable[[str], None],
           command: str | None) -> tuple[dict, dict, str | None]:
    """Load -> check -> tokenize -> (``job.before_prune``) -> prune -> record -> export, for
    ``run`` and ``prune`` alike; returns the pruning info, the final record and (main process)
    the exported directory. Everything that can fail at the start fails before the work folder
    is written: the folder itself (another request, not ours), the data, the model and the recipe."""
    main = state.is_main_process
    say = log_print if main else (lambda _msg: None)
    folder, train = job.folder, job.folder is not None
    t_start = time.time()
    set_seed(cfg.train.seed)
    # every process checks (a refusal stops them all), and goes on with the main process's answer
    resuming = _broadcaster(state)(folder.matches(overwrite)) if train else False
    # a trim keeps the training split's tokens: read before any work, also by a prune without training
    raw = load_train_val(cfg.data) if train or cfg.export_trim_vocab else None
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    model, tok = job.load(raw)
    dcfg = with_prefix(cfg, resolved_prefix(cfg.data.prefix, model))
    check_model(model, tok, cfg, dcfg.data.prefix, job.base_model or cfg.model.name, train)
    if main and train:
        folder.start(resuming, note=log_print)
    state.wait_for_everyone()
    if resuming:
        say(f"[{cfg.name}] continuing the {job.kind[0]} in {folder.path} (same {job.kind[1]})")

    def log(rec: dict) -> None:
        if main and train:
            folder.log({**rec, "t": round(time.time() - t_start, 2)})

    if torch.cuda.is_available():
        model.to(state.device)
    train_ds = val_ds = evaluate_fn = None
    if train:
        train_ds, val_ds = (D.tokenize(x, tok, dcfg.data.prefix, cfg.data.max_source_length,
                                       cfg.data.max_target_length) for x in raw)
        say(f"[{cfg.name}] {len(raw[0])} train / {len(raw[1])} validation documents; "
            f"{S.dense_param_count(model):,} parameters")
    if job.evaluate:
        evaluate_fn = evaluator(tok, raw[1].select(range(min(cfg.eval.docs, len(raw[1])))), prefix=dcfg.data.prefix,
                                max_source_length=cfg.data.max_source_length, batch_size=cfg.eval.batch_size,
                                decoding=cfg.eval.decoding(), state=state, log_print=log_print)
    quality = None
    if job.before_prune is not None:
        model, quality = job.before_prune(model, tok, dcfg, train_ds, evaluate_fn, log, resuming)
    from .summary import original_record

    original = original_record(model)  # what the pruned model is compared with
    model, records, sections = prune_model(
        model, tok, cfg, train_ds=train_ds, val_ds=val_ds, state=state, evaluate_fn=evaluate_fn, log=log,
        **({"work_dir": folder.path, "metrics_path": folder.metrics, "checkpoint_dir": folder.steps} if train else {}),
        checkpoint_owner=job.owner, log_print=say)
    final = stage_record(model, cfg.prune.groups)
    if records:
        final.update({k: records[-1][k] for k in ("kaggle_score", "rougeLsum") if k in records[-1]})
    info = pruning_info(dcfg, records, final, sections, original=original, base_model=job.base_model,
                        command=command, quality=quality)
    out = None
    if main:
        log_print(f"[{cfg.name}] exporting to {job.out} ({cfg.export_format})")
        out = export(model.to("cpu"), tok, job.out, info, cfg.export_format, cfg.export_dtype,
                     decoding=cfg.eval.decoding(), trim=trim_args(cfg, raw and raw[0], dcfg.data.prefix))
        log_summary(model, out, original, job.source, cfg, log_print)
        log({"event": "export", "model_dir": str(out)})
    return info, final, out


# ----------------------------------------------------------------------------- run


def run_folder_matches(run_dir: Path, cfg: ExperimentConfig, overwrite: bool) -> bool:
    """True if ``run_dir`` holds a run of this very config (to be continued); False if there is
    none (or ``overwrite``); raises otherwise (:meth:`summprune.workdir.WorkFolder.matches`)."""
    return RunFolder(run_dir, cfg, legacy_prefix=known_prefix(cfg)).matches(overwrite)


def run(cfg: ExperimentConfig, *, overwrite: bool = False, log_print: Callable[[str], None] = print,
        command: str | None = None) -> dict:
    """The whole pipeline for one config; returns the summary written to runs/<name>/.

    Resumable: a run folder holding the same config is continued (fine-tuning from its newest
    Trainer checkpoint, pruning after its last completed step); one holding another config is
    refused unless ``overwrite`` (which keeps a fine-tuned model whose fingerprint still matches).
    The run folder is locked while it runs: a second ``run`` of the same name is refused, naming
    the pid of the first (a lock left by a killed run is taken over). ``command``: the command line
    that started it, recorded in pruning.json and the model card."""
    from .io.files import check_output, lock_output

    # Everything that can fail at the start fails before the run folder is touched and before
    # any training: the output path (checked again at export), the data, the model.
    check_output(cfg.output_dir)
    check_train_config(cfg.train)
    state = PartialState()
    main = state.is_main_process
    folder = RunFolder(Path(cfg.runs_dir) / cfg.name, cfg, legacy_prefix=known_prefix(cfg))
    t_start = time.time()
    scores: dict = {}

    def load(raw):
        # the on-the-fly tokenizer (tiny model) sees inputs exactly as the model will, prefix included
        tiny_prefix = (known_prefix(cfg) or "") if cfg.model.name == "tiny" else ""
        return build_model_and_tokenizer(cfg.model, [tiny_prefix + t for t in raw[0]["text"]] + list(raw[0]["summary"]))

    def before_prune(model, tok, dcfg, train_ds, evaluate_fn, log, resuming):
        model, scores["initial"], scores["finetuned"] = _finetune_stage(
            dcfg, state, folder, model, tok, train_ds, evaluate_fn, log, resuming, log_print)
        before = {k: scores["finetuned"][k] for k in ("kaggle_score", "rougeLsum") if k in scores["finetuned"]}
        return model, ({"before": before, "eval_docs": scores["finetuned"].get("eval_docs"),
                        "decoding": cfg.eval.decoding()} if before else None)

    job = Job(kind=("run", "config"), load=load, out=cfg.output_dir, folder=folder,
              owner={"config": config_to_dict(cfg)}, source="the fine-tuned model",
              base_model=None if cfg.model.name == "tiny" else cfg.model.name,  # tiny: built here
              evaluate=True, before_prune=before_prune)
    with contextlib.ExitStack() as locks:
        if main:
            locks.enter_context(folder.lock())
            locks.enter_context(lock_output(cfg.output_dir))
        _, final, out = _drive(cfg, state, job, overwrite, log_print, command)
        summary = {}
        if main:
            summary = {"name": cfg.name, "model_dir": str(out),
                       **{k: {s: scores[k].get(s) for s in ("kaggle_score", "rougeLsum")} for k in ("initial", "finetuned")},
                       "final": {k: final.get(k) for k in ("kaggle_score", "rougeLsum", "mask_ratio", "nonzero_ratio",
                                                           "nonzero_ratio_vs_original") if k in final},
                       "wall_s": round(time.time() - t_start, 1)}
            atomic_write_json(folder.path / "summary.json", summary)
            from .report import run_figures

            figures = run_figures(folder.path, title=f"{cfg.name}: score after each pruning stage")
            log_print(f"[{cfg.name}] done in {summary['wall_s']} s; model in {out}; run folder {folder.path} "
                      f"(figures: {', '.join(p.name for p in figures.values())})")
    state.wait_for_everyone()
    return summary


def _finetune_stage(cfg: ExperimentConfig, state, folder: RunFolder, model, tok, train_ds, evaluate_fn, log,
                    resuming: bool, log_print) -> tuple:
    """``run`` before pruning: score, fine-tune (or reuse the fine-tuned model of an identical
    earlier run: hours on t5-small), score again; a continued run takes the scores its metrics
    hold (minutes on t5-small). Returns ``(model, initial, finetuned)``."""
    from .export import load_model, save_hf

    def scored(event: str, model) -> dict:
        res = folder.logged(event) if resuming else None
        if res is None:
            res = evaluate_fn(model)
            log({"event": event, **res, **stage_record(model, cfg.prune.groups)})
        return res

    initial = scored("initial", model)
    if not cfg.finetune:
        return model, initial, initial
    ft_dir, main = folder.path / "finetuned", state.is_main_process
    # data.prefix resolved: a run saved before "auto" keeps its fingerprint
    fp = hashlib.sha256(json.dumps([dataclasses.asdict(p) for p in (cfg.data, cfg.model, cfg.train)],
                                   sort_keys=True).encode()).hexdigest()[:16]
    stamp = ft_dir / "fingerprint.txt"
    if stamp.is_file() and stamp.read_text().strip() == fp:
        log_print(f"[{cfg.name}] reusing fine-tuned model in {ft_dir}")
        model = load_model(ft_dir)
        if torch.cuda.is_available():
            model.to(state.device)
        log({"event": "finetune", "reused": str(ft_dir)})
    else:
        log_print(f"[{cfg.name}] fine-tuning")
        ft_work = folder.trainer / "finetune"  # a new start's folder was emptied: only this run's checkpoints
        m = finetune(model, tok, train_ds, cfg.train, ft_work, log_path=folder.metrics, stage="finetune",
                     checkpoints=True)
        if main:
            save_hf(model, ft_dir, tokenizer=tok)
            stamp.write_text(fp + "\n")
            shutil.rmtree(ft_work, ignore_errors=True)  # finetuned/ holds the result
        state.wait_for_everyone()
        log({"event": "finetune", **{k: v for k, v in m.items() if isinstance(v, (int, float))}})
    return model, initial, scored("finetuned", model)


def prune_existing(model_dir: str | Path, cfg: ExperimentConfig, output: str | Path, *, train: bool = True,
                   overwrite: bool = False, log_print: Callable[[str], None] = print,
                   command: str | None = None) -> dict:
    """Apply ``cfg``'s recipe to a saved model (any format, a course directory included) and
    export it; returns the pruning info. The same path as ``run`` (:func:`_drive`).

    Resumable as ``run`` is, in ``<output>.trainer/`` (:class:`summprune.workdir.PruneWork`);
    another model (by its files' content), config or --no-train is refused naming what differs;
    ``overwrite`` starts again. The output is locked while it is made (a second ``prune`` or an
    ``export`` to it is refused). With ``train=False`` nothing is trained, no data read, no work
    folder written: the counts in seconds. ``command``: the command line, for pruning.json."""
    from .export import load_model
    from .io.files import check_output, lock_output
    from .modeling import load_tokenizer

    check_output(output)  # before any pruning or training, not only at export
    if (Path(str(model_dir)).expanduser() / "config.json").is_file():
        check_export_family(cfg, model_dir)  # a BART with a course recipe: refused before anything is loaded
    if train:
        check_train_config(cfg.train)
    state = PartialState()
    out = Path(output).expanduser()
    kp = known_prefix(cfg, model_dir)  # resolved, so a work folder from before 'auto' stays the same request
    request = prune_request(model_dir, with_prefix(cfg, kp) if kp is not None else cfg, train)

    def load(_raw):
        if state.is_main_process:
            log_print(f"[{cfg.name}] loading {model_dir}")
        return load_model(model_dir), load_tokenizer(model_dir)

    job = Job(kind=("prune", "model and config"), load=load, out=out,
              folder=PruneWork(out, request) if train else None, owner=request, source=str(model_dir),
              base_model=str(model_dir))
    with (lock_output(out) if state.is_main_process else contextlib.nullcontext()):
        info, _, _ = _drive(cfg, state, job, overwrite, log_print, command)
    state.wait_for_everyone()
    return info

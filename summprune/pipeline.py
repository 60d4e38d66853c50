"""One run: config -> data + model -> fine-tune -> methods (prune, recover, evaluate, log) -> export.

``prune_model`` is the one pruning driver: ``run``, ``prune_existing`` and the benchmarks call it;
each method is a ``summprune.methods`` class behind one interface. Every step is a function with
explicit arguments; ``run`` only wires them and writes the run
folder ``runs/<name>/``: ``config.json`` (resolved), ``metrics.jsonl`` (one record per event),
``summary.json`` and the figures (``score_vs_ratio.png``, ``group_sparsity.png``). Under ``accelerate launch`` every process runs the same code; the Trainer
synchronises training, and only the main process evaluates and writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
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
from .train import check_train_config, finetune

PRUNING_FORMAT = "summprune.pruning/1"


# ----------------------------------------------------------------------------- building blocks


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


STEP_STATE = "state.safetensors"
STEP_INFO = "step.json"


def save_step(checkpoint_dir: str | Path, model, info: dict, owner: dict | None = None) -> None:
    """The pruned model after a completed step, masks included, and what the driver needs to go
    on from there (``info``: step numbers, records, sections, the plan being executed), written
    atomically to ``checkpoint_dir/latest`` (one checkpoint kept: the newest). ``step.json`` also
    records the state file's sha256 and ``owner`` (what the work folder was asked to do, the
    starting model's fingerprint included), which :func:`load_step` checks before using it."""
    from safetensors.torch import save_file

    from .io.files import atomic_dir, file_digests, write_json

    # clones: safetensors refuses tensors that share memory (the tied embedding's names)
    sd = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    hw = head._parameters.get("weight_orig", head._parameters.get("weight"))
    ew = emb._parameters.get("weight_orig", emb._parameters.get("weight"))
    with atomic_dir(Path(checkpoint_dir) / "latest") as tmp:
        save_file(sd, str(tmp / STEP_STATE))
        write_json(tmp / STEP_INFO, {**info, "config": model.config.to_dict(), "untied_lm_head": hw is not ew,
                                     "state_sha256": file_digests(tmp, [STEP_STATE])[STEP_STATE],
                                     **({"owner": owner} if owner is not None else {})})


class StepError(ValueError):
    """A step checkpoint that cannot be used: corrupt, changed since it was written, or written
    for another work folder; the message says so and that ``--overwrite`` starts again."""


def _normalized_owner(owner):
    """``owner`` with its ``config`` resolved as this version resolves it (a key added since, with
    its default, does not make a checkpoint someone else's)."""
    if isinstance(owner, dict) and isinstance(owner.get("config"), dict):
        return {**owner, "config": with_new_defaults(owner["config"])}
    return owner


def load_step(checkpoint_dir: str | Path, tie_mode: str, owner: dict | None = None,
              note: Callable[[str], None] | None = None) -> tuple[torch.nn.Module, dict] | None:
    """The model and info of the newest step checkpoint, or None: the model is rebuilt from the
    saved config (a structural method may have changed the shape), masked where the state has
    masks (``prune.identity``, then the saved ``weight_orig``/``weight_mask``), ties restored.

    Checked first, each a :class:`StepError` naming the file and suggesting ``--overwrite``: the
    files are regular files in the folder (not symlinks), ``step.json`` is readable, the state's
    sha256 is the one ``step.json`` records, and ``owner`` (when given) is the one it records: a
    step copied from another prune, or from one that started from another model, is refused
    naming the keys that differ. A checkpoint written before steps recorded these is used (with a
    ``note``) after the checks it can have."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from torch.nn.utils import prune as torch_prune
    from transformers import AutoConfig

    from .io.files import file_digests, read_json
    from .io.hf import check_config, meta_model_from_config
    from .models import family_of
    from .prune import sync_tied_masks, untie_lm_head

    d = Path(checkpoint_dir) / "latest"
    hint = "; add --overwrite to start again (the steps done so far are lost)"
    if not any(p.exists() or p.is_symlink() for p in (d / STEP_INFO, d / STEP_STATE)):
        return None
    for p in (d, d / STEP_INFO, d / STEP_STATE):
        if p.is_symlink():
            raise StepError(f"{p}: a symlink (to {os.readlink(p)}); a step checkpoint is never read through a "
                            f"link{hint}")
        if p != d and not p.is_file():
            raise StepError(f"{p}: missing or not a regular file; the step checkpoint is incomplete{hint}")
    try:
        info = read_json(d / STEP_INFO)
    except ValueError as e:
        raise StepError(f"{e}{hint}") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise StepError(f"{d / STEP_INFO}: not a step record (no model config in it){hint}")
    legacy = []
    recorded = info.get("state_sha256")
    if recorded is None:
        legacy.append("the state's digest")
    elif recorded != file_digests(d, [STEP_STATE], follow_symlinks=False)[STEP_STATE]:
        raise StepError(f"{d / STEP_STATE}: not the state {STEP_INFO} records (its sha256 differs: changed, "
                        f"truncated or copied from elsewhere since it was written){hint}")
    if owner is not None:
        if "owner" not in info:
            legacy.append("whose work it is")
        else:
            mine, theirs = _normalized_owner(json.loads(json.dumps(owner))), _normalized_owner(info["owner"])
            if mine != theirs:
                diff = sorted(_diff_keys(theirs, mine)) if isinstance(theirs, dict) else ["(unreadable owner)"]
                raise StepError(f"{d}: a step checkpoint of another prune or model (differs in: "
                                f"{', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}){hint}")
    if legacy and note is not None:
        note(f"{d} was written before step checkpoints recorded {' and '.join(legacy)}: used as it is")
    config = info["config"]
    try:
        fam = family_of(config)
        # step.json's sizes and the memory the model and its state take, checked before either is
        # allocated (vocab_size=1000000, d_model=4096 built 16.4 GB before any check)
        check_config(config, d / STEP_INFO)
        try:
            hf_config = AutoConfig.for_model(config.get("model_type") or fam.model_types[0], **{
                k: v for k, v in config.items() if k != "model_type"})
        except Exception as e:  # huggingface_hub's strict fields raise their own error class
            raise ValueError(f"{d / STEP_INFO}: its config cannot be read as a {fam.name} config "
                             f"({type(e).__name__}: {str(e).strip().splitlines()[-1][:200]})") from None
    except (ValueError, TypeError, KeyError) as e:
        raise StepError(f"{e}{hint}") from None
    meta_model_from_config(hf_config, d / STEP_INFO, copies=2,
                           what="resuming the pruned model (its saved state and the model)")
    try:
        sd = load_file(str(d / STEP_STATE))
    except (SafetensorError, OSError) as e:
        raise StepError(f"{d / STEP_STATE}: cannot be read ({e}); the file is truncated or corrupt{hint}") from None
    try:
        model = fam.build(hf_config)
        if info.get("untied_lm_head"):
            untie_lm_head(model)
        for name, mod in model.named_modules():
            if f"{name}.weight_mask" in sd and "weight" in mod._parameters:
                torch_prune.identity(mod, "weight")
        model.load_state_dict(sd, strict=True)
    except (ValueError, TypeError, KeyError, RuntimeError) as e:
        msg = " ".join(str(e).split())[:240] or type(e).__name__
        raise StepError(f"{d}: the state does not fit the model {STEP_INFO} describes ({msg}){hint}") from None
    if tie_mode == "tied":
        sync_tied_masks(model)
    return model.eval(), info


def _check_resume_info(info: dict, methods: list, where) -> None:
    """StepError unless a step checkpoint's positions fit this recipe's methods (an edited or
    foreign ``step.json`` must not fail with an IndexError deep in the driver)."""
    def is_int(x) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    problem = None
    if not is_int(info.get("method")) or not 0 <= info["method"] < len(methods):
        problem = f"method={info.get('method')!r}: this recipe has methods 0 to {len(methods) - 1}"
    elif not is_int(info.get("method_step")) or info["method_step"] < 0:
        problem = f"method_step={info.get('method_step')!r}: not a step index"
    elif not is_int(info.get("step")) or info["step"] < 1:
        problem = f"step={info.get('step')!r}: not a step number"
    elif not isinstance(info.get("records"), list) or not isinstance(info.get("sections"), dict):
        problem = "records/sections missing"
    if problem:
        raise StepError(f"{Path(where) / 'latest' / STEP_INFO}: {problem}; add --overwrite to start again "
                        "(the steps done so far are lost)")


def _json_plan(plan):
    return dataclasses.asdict(plan) if dataclasses.is_dataclass(plan) else plan


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
        _check_resume_info(resume[1], methods, checkpoint_dir)
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
                                                          "plan": _json_plan(plan), "records": records,
                                                          "sections": sections}, owner=checkpoint_owner)
                    if state is not None:
                        state.wait_for_everyone()
    finally:
        del teacher
    return model, records, sections


def _log_summary(model, out_dir, original: dict, source: str, cfg: ExperimentConfig, log_print) -> None:
    """The pruned model's shape, parameters against ``original``, stored dtype and size (the
    ratios alone read 1.0 after a structural cut)."""
    from .summary import summarize, summary_lines

    for line in summary_lines(summarize(model, out_dir, original, source, cfg.prune.groups)):
        log_print(f"[{cfg.name}] {line}")


def pruning_info(cfg: ExperimentConfig, records: list[dict], final: dict, sections: dict | None = None,
                 original: dict | None = None, *, base_model: str | None = None, command: str | None = None,
                 quality: dict | None = None) -> dict:
    """What ``pruning.json`` holds: the recipe, one entry per step, the final model, what each
    method recorded (the gradual plan under ``gradual``, the removal under ``structured``) and
    ``original`` (:func:`summprune.summary.original_record` of the model pruning started from:
    what ``report`` compares with). After a structured removal ``final`` also gets
    ``nonzero_ratio_vs_original``: its non-zeros over the parameters of the model it was cut
    from (its own ratios count against the smaller shape). ``base_model`` (the model name or
    directory it started from), ``command`` (the command line that made it) and ``quality``
    (``before``: the scores of the model before pruning, on the same documents and decoding as
    ``final``'s) are recorded where given, for the model card (:mod:`summprune.card`)."""
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
    if original is not None:
        info["original"] = original
    for key, value in (("base_model", base_model), ("command", command), ("quality", quality)):
        if value is not None:
            info[key] = value
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


def run(cfg: ExperimentConfig, *, overwrite: bool = False, log_print: Callable[[str], None] = print,
        command: str | None = None) -> dict:
    """The whole pipeline for one config; returns the summary written to runs/<name>/.

    Resumable: a run folder holding the same config is continued (fine-tuning from its newest
    Trainer checkpoint, pruning after its last completed step); one holding another config is
    refused unless ``overwrite`` (which keeps a fine-tuned model whose fingerprint still matches).
    The run folder is locked while it runs: a second ``run`` of the same name is refused, naming
    the pid of the first (a lock left by a killed run is taken over). ``command``: the command line
    that started it, recorded in pruning.json and the model card."""
    from .io.files import check_output, lock_file, lock_output

    # Everything that can fail at the start fails before the run folder is touched and before
    # any training: the output path (checked again at export), the data, the model.
    check_output(cfg.output_dir)
    check_train_config(cfg.train)
    state = PartialState()
    if not state.is_main_process:
        return _run(cfg, state, log_print, overwrite, command)
    runs = Path(cfg.runs_dir)
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"runs_dir={cfg.runs_dir}: cannot be created ({e.strerror or e}); choose a writable "
                      "runs_dir=") from None
    with lock_file(runs / f".{cfg.name}.lock", f"run folder {runs / cfg.name}"), lock_output(cfg.output_dir):
        return _run(cfg, state, log_print, overwrite, command)


def _run(cfg: ExperimentConfig, state, log_print: Callable[[str], None], overwrite: bool,
         command: str | None = None) -> dict:
    main = state.is_main_process
    run_dir = Path(cfg.runs_dir) / cfg.name
    metrics_path = run_dir / "metrics.jsonl"
    t_start = time.time()
    set_seed(cfg.train.seed)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir}: exists and is not a directory (runs_dir/name of this run)")
    resuming = run_folder_matches(run_dir, cfg, overwrite)
    train_raw, val_raw = load_train_val(cfg.data)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    # The on-the-fly tokenizer (tiny model) sees inputs exactly as the model will, prefix included.
    tiny_prefix = (known_prefix(cfg) or "") if cfg.model.name == "tiny" else ""
    model, tok = build_model_and_tokenizer(
        cfg.model, [tiny_prefix + t for t in train_raw["text"]] + list(train_raw["summary"]))
    dcfg = with_prefix(cfg, resolved_prefix(cfg.data.prefix, model))
    check_groups(model, cfg)
    # the prefix against the input length (checked again by tokenize): a start that fails it must
    # fail before the folder is written, or the corrected rerun finds "another config" there
    D.check_prefix_fits(tok, dcfg.data.prefix, cfg.data.max_source_length)
    check_export_family(cfg, model)  # a hub model's family (a directory's was checked with the config)
    if main:
        if overwrite and run_dir.is_dir():
            clear_run_folder(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.json")
        if not resuming:
            metrics_path.write_text("", encoding="utf-8")  # a new run's metrics start fresh
    state.wait_for_everyone()
    if resuming:
        log_print(f"[{cfg.name}] continuing the run in {run_dir} (same config)")

    def log(rec: dict) -> None:
        if main:
            append_jsonl(metrics_path, {**rec, "t": round(time.time() - t_start, 2)})
    if torch.cuda.is_available():
        model.to(state.device)
    tokenize = lambda ds: D.tokenize(ds, tok, dcfg.data.prefix, cfg.data.max_source_length,
                                     cfg.data.max_target_length)
    train_ds = tokenize(train_raw)
    eval_rows = val_raw.select(range(min(cfg.eval.docs, len(val_raw))))

    def evaluate_fn(model) -> dict:
        res = {}
        if main:
            res = evaluate(model, tok, eval_rows, prefix=dcfg.data.prefix,
                           max_source_length=cfg.data.max_source_length, batch_size=cfg.eval.batch_size,
                           **cfg.eval.decoding())
            log_print(f"  kaggle={res['kaggle_score']:.4f} rougeLsum={res['rougeLsum']:.4f} "
                      f"({res['eval_docs']} validation docs)")
        state.wait_for_everyone()
        return res

    log_print(f"[{cfg.name}] {len(train_raw)} train / {len(val_raw)} validation documents; "
              f"{S.dense_param_count(model):,} parameters")
    # a continued run has these scores in its metrics already: generation is minutes on t5-small
    initial = _logged(metrics_path, "initial") if resuming else None
    if initial is None:
        initial = evaluate_fn(model)
        log({"event": "initial", **initial, **stage_record(model, cfg.prune.groups)})

    # Fine-tune, or reuse the fine-tuned checkpoint of an identical earlier run (hours on t5-small).
    ft_dir = run_dir / "finetuned"
    fp = _fingerprint(dcfg.data, cfg.model, cfg.train)  # resolved: a run saved before "auto" keeps its fingerprint
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
            ft_work = run_dir / "trainer" / "finetune"
            if main and not resuming:
                shutil.rmtree(ft_work, ignore_errors=True)  # checkpoints of another run's fine-tuning
            state.wait_for_everyone()
            m = finetune(model, tok, train_ds, cfg.train, ft_work, log_path=metrics_path, stage="finetune",
                         checkpoints=True)
            if main:
                from .export import save_hf

                save_hf(model, ft_dir, tokenizer=tok)
                stamp.write_text(fp + "\n")
                shutil.rmtree(ft_work, ignore_errors=True)  # finetuned/ holds the result
            state.wait_for_everyone()
            log({"event": "finetune", **{k: v for k, v in m.items() if isinstance(v, (int, float))}})
        finetuned = _logged(metrics_path, "finetuned") if resuming else None
        if finetuned is None:
            finetuned = evaluate_fn(model)
            log({"event": "finetuned", **finetuned, **stage_record(model, cfg.prune.groups)})
    else:
        finetuned = initial

    steps_dir = run_dir / "steps"
    if main and not resuming:
        shutil.rmtree(steps_dir, ignore_errors=True)
    state.wait_for_everyone()
    from .summary import original_record

    original = original_record(model)  # the fine-tuned model: what the pruned one is compared with
    model, records, sections = prune_model(
        model, tok, cfg, train_ds=train_ds, val_ds=tokenize(val_raw), state=state, work_dir=run_dir,
        metrics_path=metrics_path, evaluate_fn=evaluate_fn, log=log, checkpoint_dir=steps_dir,
        checkpoint_owner={"config": config_to_dict(cfg)}, log_print=log_print)
    final = stage_record(model, cfg.prune.groups)
    if records:
        final.update({k: records[-1][k] for k in ("kaggle_score", "rougeLsum") if k in records[-1]})
    before = {k: finetuned[k] for k in ("kaggle_score", "rougeLsum") if k in finetuned}
    quality = ({"before": before, "eval_docs": finetuned.get("eval_docs"), "decoding": cfg.eval.decoding()}
               if before else None)
    info = pruning_info(dcfg, records, final, sections, original=original,
                        base_model=None if cfg.model.name == "tiny" else cfg.model.name,  # tiny: built here
                        command=command, quality=quality)
    summary = {}
    if main:
        log_print(f"[{cfg.name}] exporting to {cfg.output_dir} ({cfg.export_format})")
        out = export(model.to("cpu"), tok, cfg.output_dir, info, cfg.export_format, cfg.export_dtype,
                     decoding=cfg.eval.decoding())
        _log_summary(model, out, original, "the fine-tuned model", cfg, log_print)
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
        from .report import run_figures

        figures = run_figures(run_dir, title=f"{cfg.name}: score after each pruning stage")
        log_print(f"[{cfg.name}] done in {summary['wall_s']} s; model in {out}; run folder {run_dir} "
                  f"(figures: {', '.join(p.name for p in figures.values())})")
    state.wait_for_everyone()
    return summary


def _logged(metrics_path: Path, event: str) -> dict | None:
    """The last record of ``event`` in a run's metrics.jsonl (a torn last line is skipped)."""
    found = None
    if metrics_path.is_file():
        for line in metrics_path.read_text(encoding="utf-8").split("\n"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("event") == event:
                found = rec
    return found


def run_folder_matches(run_dir: Path, cfg: ExperimentConfig, overwrite: bool) -> bool:
    """True if ``run_dir`` holds a run of this very config (to be continued); False if there is
    none (or ``overwrite``); ValueError naming the keys that differ otherwise."""
    saved = run_dir / "config.json"
    old = None
    if saved.is_file():
        try:
            old = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
    # the lock of the run's own output directory (taken before this check) may already sit here
    out = Path(cfg.output_dir).expanduser()
    own_lock = out.parent / f".{out.name}.lock"
    entries = [p for p in run_dir.iterdir() if not _same_path(p, own_lock)] if run_dir.is_dir() else []
    if entries and not _is_run_config(old):
        # never adopt (nor, with --overwrite, empty) a folder that is not a run folder: it may be
        # someone's data, or a model directory, that happens to sit at runs_dir/name
        raise FileExistsError(f"{run_dir}: exists and is not a run folder (no config.json of a run in it); "
                              "move it away or choose another name= / runs_dir=")
    if overwrite or old is None:
        return False
    new = json.loads(json.dumps(config_to_dict(cfg)))
    old = with_new_defaults(old)
    # a run saved before data.prefix defaulted to 'auto' holds the prefix that then was the default
    # ("summarize: "): the same run if 'auto' resolves to it for this model
    if (isinstance(old, dict) and isinstance(old.get("data"), dict) and new["data"]["prefix"] == "auto"
            and old["data"].get("prefix") not in (None, "auto") and old["data"]["prefix"] == known_prefix(cfg)):
        old["data"]["prefix"] = "auto"
    if old == new:
        return True
    diff = sorted(_diff_keys(old, new)) if isinstance(old, dict) else ["(unreadable config.json)"]
    raise ValueError(f"{run_dir} holds a run of another config (differs in: {', '.join(diff[:8])}"
                     f"{' ...' if len(diff) > 8 else ''}); add --overwrite to start it again (a fine-tuned model "
                     "with the same data/model/train settings is kept and reused), or choose another name=")


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def with_new_defaults(saved: dict) -> dict:
    """A saved resolved config as this version of the package resolves it: a key added since (with
    its default, which changes nothing the old run did) does not make a folder "another config".
    A saved config this version cannot read is returned as it is (and then differs)."""
    from .config import ConfigError, config_from_dict

    try:
        return json.loads(json.dumps(config_to_dict(config_from_dict(saved, "saved config"))))
    except (ConfigError, TypeError, ValueError, KeyError):
        return saved


def _is_run_config(obj) -> bool:
    """A run folder's ``config.json`` (a resolved ExperimentConfig), not a model's config.json."""
    return isinstance(obj, dict) and {"name", "data", "model", "train", "prune", "eval"} <= set(obj)


def _diff_keys(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def clear_run_folder(run_dir: Path) -> None:
    """``--overwrite``: empty the run folder but keep ``finetuned/`` (reused only while its
    fingerprint matches the data/model/train settings)."""
    for p in run_dir.iterdir():
        if p.name == "finetuned":
            continue
        shutil.rmtree(p) if p.is_dir() else p.unlink()


#: ``<output>.trainer/prune.json``: what a ``prune`` was asked to do; a start that finds the same
#: request there continues the work it holds, another request is refused (or, with ``overwrite``,
#: replaces it).
PRUNE_REQUEST = "prune.json"
#: What a prune work folder may hold: a folder with anything else is someone else's, never adopted.
PRUNE_WORK_FILES = {PRUNE_REQUEST, "metrics.jsonl", "steps", "trainer"}


def prune_work_dir(output: str | Path) -> Path:
    """Where ``prune`` keeps its step checkpoints, Trainer files and ``metrics.jsonl``: a sibling
    ``<output>.trainer/`` (beside the output, so a finished output directory holds the model only)."""
    out = Path(output).expanduser()
    return out.with_name(out.name + ".trainer")


#: The key of ``prune.json`` holding the starting model's fingerprint.
MODEL_DIGEST = "model_sha256"


def model_fingerprint(model_dir: str | Path) -> dict[str, str] | None:
    """``{file: sha256}`` of the files that decide what loading ``model_dir`` gives (config,
    weights, tokenizer, generation config: :func:`summprune.io.hf.model_file_names`); None for
    a name that is not a directory (a hub name). Reading the weights once is seconds at most
    for t5-small, next to the minutes a prune step takes."""
    from .io.files import file_digests
    from .io.hf import model_file_names

    d = Path(str(model_dir)).expanduser()
    return file_digests(d, model_file_names(d)) if d.is_dir() else None


def _prune_request(model_dir: str | Path, cfg: ExperimentConfig, train: bool) -> dict:
    """What ``prune.json`` records: the model (its path, and, for a prune that trains and so keeps
    a work folder, its content's fingerprint: a resume with another model at the same path is
    refused), ``--no-train`` and the resolved config."""
    p = Path(str(model_dir)).expanduser()
    model = str(p.resolve()) if p.exists() else str(model_dir)
    req = {"model": model, "train": train, "config": config_to_dict(cfg)}
    if train:
        req[MODEL_DIGEST] = model_fingerprint(model_dir)
    return json.loads(json.dumps(req))


def check_prune_work(work_dir: Path, request: dict, overwrite: bool) -> bool:
    """True if ``work_dir`` holds ``request`` (to be continued), False if it is absent or to be
    started again; raises, touching nothing, where it must not be used: a folder with another
    request is refused naming the keys that differ, unless ``overwrite``; a folder that is not a
    prune work folder (anything but :data:`PRUNE_WORK_FILES` in it) is never adopted nor emptied,
    as it may be someone's data."""
    if work_dir.is_symlink() or (work_dir.exists() and not work_dir.is_dir()):
        raise FileExistsError(f"{work_dir}: exists and is not a directory (prune keeps its work there); "
                              "move it away or choose another --output")
    if not work_dir.is_dir():
        return False
    foreign = sorted(p.name for p in work_dir.iterdir() if p.name not in PRUNE_WORK_FILES)
    if foreign:
        raise FileExistsError(f"{work_dir}: exists and is not a prune work folder (it holds {foreign[:3]}); "
                              "prune keeps its checkpoints there: move it away or choose another --output")
    if overwrite:
        return False
    saved = work_dir / PRUNE_REQUEST
    old = None
    if saved.is_file():
        try:
            old = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = "(unreadable)"
    if isinstance(old, dict) and isinstance(old.get("config"), dict):
        old = {**old, "config": with_new_defaults(old["config"])}
    if isinstance(old, dict) and MODEL_DIGEST not in old:
        # a work folder from before prune.json recorded the model's content: the same request if
        # all else matches (open_prune_work records the fingerprint then)
        old = {**old, MODEL_DIGEST: request.get(MODEL_DIGEST)}
    if old == request:
        return True
    if old is not None:
        diff = sorted(_diff_keys(old, request)) if isinstance(old, dict) else [f"(unreadable {PRUNE_REQUEST})"]
        files = sorted(k[len(MODEL_DIGEST) + 1:] for k in diff if k.startswith(MODEL_DIGEST + "."))
        what = (f"; the model at {request['model']} is not the one this work started from"
                + (f" (its {', '.join(files[:6])} changed)" if files else "")
                if files or MODEL_DIGEST in diff else "")
        raise ValueError(f"{work_dir} holds the checkpoints of another prune (differs in: {', '.join(diff[:8])}"
                         f"{' ...' if len(diff) > 8 else ''}){what}; add --overwrite to start again, or choose "
                         "another --output")
    return False


def open_prune_work(work_dir: Path, request: dict, resuming: bool, log_print: Callable[[str], None] = print) -> None:
    """A new work folder for ``request`` (an old one of ours emptied first), or, ``resuming``, the
    one there as it is: its metrics are appended to, never wiped (a ``prune.json`` written before
    it recorded the model's fingerprint gets it, with a note)."""
    if resuming:
        saved = json.loads((work_dir / PRUNE_REQUEST).read_text(encoding="utf-8"))
        if MODEL_DIGEST not in saved:
            atomic_write_json(work_dir / PRUNE_REQUEST, request)
            log_print(f"note: {work_dir / PRUNE_REQUEST} was written before it recorded the model's fingerprint; "
                      f"recorded now from {request['model']} as it is (a model replaced before this resume "
                      "cannot be told apart)")
        return
    if work_dir.is_dir():
        shutil.rmtree(work_dir)  # ours (checked): another request with --overwrite, or an unfinished start
    work_dir.mkdir(parents=True)
    (work_dir / "metrics.jsonl").write_text("", encoding="utf-8")
    atomic_write_json(work_dir / PRUNE_REQUEST, request)  # last: a start killed before this begins anew


def prune_existing(model_dir: str | Path, cfg: ExperimentConfig, output: str | Path, *, train: bool = True,
                   overwrite: bool = False, log_print: Callable[[str], None] = print,
                   command: str | None = None) -> dict:
    """Apply ``cfg``'s recipe to a saved model (any format, a course directory included) and
    export it; returns the pruning info. The same driver as ``run`` (plans broadcast under
    several processes; only the main process writes).

    Resumable as ``run`` is: ``<output>.trainer/`` (:func:`prune_work_dir`) gets the request
    (``prune.json``), the Trainer's files, ``metrics.jsonl`` (appended to) and the pruned state
    after every completed step (``steps/``); the same command started again after a kill goes on
    after the last completed step, another model (by its files' content: :func:`model_fingerprint`),
    config or --no-train is refused naming what differs, as is a step checkpoint that is not this
    work's (:func:`load_step`); ``overwrite`` starts again. The output is locked while it is made:
    a second ``prune`` or an ``export`` to the same directory is refused, naming the first one's pid.

    With ``train=False`` no fine-tuning runs, no data is read and no work folder is written: the
    counts can be checked on any model of the right shape in seconds. ``command``: the command
    line that started it, recorded in pruning.json and the model card.
    """
    from .export import load_model
    from .io.files import check_output, lock_output
    from .modeling import load_tokenizer

    check_output(output)  # before any pruning or training, not only at export
    if (Path(str(model_dir)).expanduser() / "config.json").is_file():
        check_export_family(cfg, model_dir)  # a BART with a course recipe: refused before anything is loaded
    if train:
        check_train_config(cfg.train)
    state = PartialState()
    main = state.is_main_process
    out = Path(output).expanduser()
    with (lock_output(out) if main else contextlib.nullcontext()):
        return _prune_existing(model_dir, cfg, out, train, overwrite, state, log_print, load_model, load_tokenizer,
                               command)


def _prune_existing(model_dir, cfg, out: Path, train: bool, overwrite: bool, state, log_print, load_model,
                    load_tokenizer, command: str | None = None) -> dict:
    main = state.is_main_process
    work_dir = prune_work_dir(out)
    kp = known_prefix(cfg, model_dir)  # resolved, so a work folder from before 'auto' stays the same request
    request = _prune_request(model_dir, with_prefix(cfg, kp) if kp is not None else cfg, train)
    # fails before any loading or training, touching nothing
    resuming = check_prune_work(work_dir, request, overwrite) if train and main else False
    if main:
        log_print(f"[{cfg.name}] loading {model_dir}")
    model = load_model(model_dir)
    tok = load_tokenizer(model_dir)
    check_groups(model, cfg)
    check_export_family(cfg, model)
    dcfg = with_prefix(cfg, resolved_prefix(cfg.data.prefix, model))
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if (cfg.export_format == "course" and getattr(model.config, "tie_word_embeddings", False)
            and head is not None and head.weight is not emb.weight):
        raise ValueError(f"{model_dir}: its lm_head is a tensor of its own beside the embedding (a model pruned "
                         "with tie_mode 'course' or 'untie'), which the course format cannot hold once it is pruned "
                         "or trained further; start from the unpruned fine-tuned model, or export 'hf'/'compact'")
    if torch.cuda.is_available():
        model.to(state.device)
    train_ds = val_ds = None
    metrics_path = checkpoint_dir = None
    if train:
        train_raw, val_raw = load_train_val(cfg.data)
        train_ds, val_ds = (D.tokenize(x, tok, dcfg.data.prefix, cfg.data.max_source_length, cfg.data.max_target_length)
                            for x in (train_raw, val_raw))
        if main:
            open_prune_work(work_dir, request, resuming, log_print)
            if resuming:
                log_print(f"[{cfg.name}] continuing the prune in {work_dir} (same model and config)")
        metrics_path, checkpoint_dir = work_dir / "metrics.jsonl", work_dir / "steps"
        state.wait_for_everyone()

    def log(rec: dict) -> None:
        if main and metrics_path is not None:
            append_jsonl(metrics_path, rec)

    from .summary import original_record

    original = original_record(model)  # the model as loaded: what the pruned one is compared with
    model, records, sections = prune_model(model, tok, cfg, train_ds=train_ds, val_ds=val_ds, state=state,
                                           work_dir=work_dir, metrics_path=metrics_path, log=log,
                                           checkpoint_dir=checkpoint_dir, checkpoint_owner=request,
                                           log_print=log_print if main else (lambda _msg: None))
    final = stage_record(model, cfg.prune.groups)
    info = pruning_info(dcfg, records, final, sections, original=original, base_model=str(model_dir),
                        command=command)
    if main:
        log_print(f"[{cfg.name}] exporting to {out} ({cfg.export_format})")
        export(model.to("cpu"), tok, out, info, cfg.export_format, cfg.export_dtype, decoding=cfg.eval.decoding())
        _log_summary(model, out, original, str(model_dir), cfg, log_print)
        log({"event": "export", "model_dir": str(out)})
    state.wait_for_everyone()
    return info

"""Fine-tuning and recovery fine-tuning with ``Seq2SeqTrainer``.

The Trainer gives us CPU, one GPU and several GPUs (``accelerate launch`` / ``torchrun``) with the
same code, so nothing here is distributed-specific. Pruning masks are forward pre-hooks on the
modules, so they survive the optimizer: the optimizer updates ``weight_orig`` and every forward
recomputes ``weight = weight_orig * weight_mask``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from transformers import (
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)

from . import faults
from .config import TrainConfig


def precision_flags(precision: str) -> dict:
    """Mixed precision only on GPU: 'auto' picks bf16 where supported, else fp16; CPU stays fp32."""
    # Half precision on CPU is slow and not what the course does, so CPU always trains in fp32.
    if precision == "fp32" or not torch.cuda.is_available():
        return {"bf16": False, "fp16": False}
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


class JsonlLogger(TrainerCallback):
    """Appends the Trainer's log records, tagged with the stage, to a JSONL file (main process)."""

    def __init__(self, path: str | Path | None, stage: str):
        self.path = Path(path) if path else None
        self.stage = stage
        self.t0 = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        faults.point(f"{self.stage}:{state.global_step}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.path is None or not state.is_world_process_zero or not logs:
            return
        rec = {"event": "train_log", "stage": self.stage, "step": state.global_step,
               "elapsed_s": round(time.time() - self.t0, 2), **logs}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")


def make_trainer(model, tokenizer, train_ds, cfg: TrainConfig, output_dir: str | Path, *,
                 epochs: float | None = None, max_steps: int | None = None,
                 log_path: str | Path | None = None, stage: str = "finetune",
                 trainer_cls=Seq2SeqTrainer, trainer_kwargs: dict | None = None,
                 checkpoints: bool = False) -> Seq2SeqTrainer:
    """A Seq2SeqTrainer set up from ``cfg``; ``epochs``/``max_steps`` override it (recovery)."""
    args = training_arguments(cfg, output_dir, epochs=epochs, max_steps=max_steps, checkpoints=checkpoints)
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    return trainer_cls(
        model=model,
        args=args,
        train_dataset=train_ds,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[JsonlLogger(log_path, stage)],
        **(trainer_kwargs or {}),
    )


def check_train_config(cfg: TrainConfig) -> None:
    """Build the Trainer's arguments once, before any data, training or run folder: a value only
    transformers can judge (``lr_scheduler``) fails at the start, naming the key, not after the
    first evaluation. Writes nothing (the arguments create no directory)."""
    try:
        training_arguments(cfg, "unused-output-dir")
    except ValueError as e:
        key = "train.lr_scheduler" if "SchedulerType" in str(e) else "train"
        raise ValueError(f"{key}: {e}") from None


def training_arguments(cfg: TrainConfig, output_dir: str | Path, *, epochs: float | None = None,
                       max_steps: int | None = None, checkpoints: bool = False) -> Seq2SeqTrainingArguments:
    steps = cfg.max_steps if max_steps is None else max_steps
    return Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        num_train_epochs=cfg.epochs if epochs is None else epochs,
        max_steps=steps if steps and steps > 0 else -1,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        # Fine-tuning (no masks yet) saves Trainer checkpoints every save_steps so that a killed run
        # resumes mid-training; recoveries do not (a masked model's tied weight_orig does not go
        # through save_pretrained): the pipeline checkpoints the pruned state after every step.
        save_strategy="steps" if checkpoints and cfg.save_steps > 0 else "no",
        save_steps=max(cfg.save_steps, 1),
        save_total_limit=1,
        eval_strategy="no",
        report_to=[],
        disable_tqdm=not cfg.progress_bar,
        dataloader_num_workers=cfg.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning is for copies to a GPU; on CPU torch warns
        # Masks are buffers, identical on all ranks; broadcasting them each step is wasted work.
        ddp_broadcast_buffers=False,
        **precision_flags(cfg.precision),
    )


#: What a Trainer checkpoint needs to be resumed from; a kill during the save leaves some missing.
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete Trainer checkpoint in ``output_dir``, or None. A ``checkpoint-N`` that
    a kill during the Trainer's save left incomplete (no ``trainer_state.json``, optimizer or
    scheduler state, or no weights) is removed: resuming from it fails, and every later start
    would pick it again as the highest number."""
    import re
    import shutil

    d = Path(output_dir)
    if not d.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in d.iterdir()
                   if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))
    for _, p in reversed(found):
        complete = all((p / f).is_file() for f in CHECKPOINT_FILES) and any(p.glob("model*.safetensors"))
        if complete:
            return str(p)
        shutil.rmtree(p, ignore_errors=True)
    return None


def finetune(model, tokenizer, train_ds, cfg: TrainConfig, output_dir: str | Path, *,
             epochs: float | None = None, max_steps: int | None = None,
             log_path: str | Path | None = None, stage: str = "finetune",
             trainer_cls=Seq2SeqTrainer, trainer_kwargs: dict | None = None,
             checkpoints: bool = False) -> dict:
    """Train ``model`` in place; returns the Trainer's train metrics plus samples/s.

    With ``checkpoints`` (fine-tuning), a Trainer checkpoint is saved every ``cfg.save_steps``
    optimizer steps in ``output_dir``, and training resumes from the newest one found there
    (model, optimizer, scheduler and RNG states), so a killed run loses at most that many steps.
    """
    if (epochs is not None and epochs <= 0) and not (max_steps and max_steps > 0):
        return {}
    trainer = make_trainer(model, tokenizer, train_ds, cfg, output_dir, epochs=epochs,
                           max_steps=max_steps, log_path=log_path, stage=stage,
                           trainer_cls=trainer_cls, trainer_kwargs=trainer_kwargs, checkpoints=checkpoints)
    resume = last_checkpoint(output_dir) if checkpoints else None
    out = trainer.train(resume_from_checkpoint=resume)
    metrics = dict(out.metrics)
    metrics["global_step"] = out.global_step
    model.eval()
    return metrics


@torch.no_grad()
def validation_loss(model, tokenizer, ds, batch_size: int = 8) -> float:
    """Mean token cross-entropy on a tokenized dataset (used by sensitivity/eval)."""
    if len(ds) == 0:
        return math.nan
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    cols = [c for c in ("input_ids", "attention_mask", "labels") if c in ds.column_names]
    for i in range(0, len(ds), batch_size):
        feats = [{c: ds[j][c] for c in cols} for j in range(i, min(i + batch_size, len(ds)))]
        batch = {k: v.to(device) for k, v in collator(feats).items()}
        logits = model(**batch).logits
        labels = batch["labels"]
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), labels.view(-1),
                                                 ignore_index=-100, reduction="sum")
        total += float(loss)
        count += int((labels != -100).sum())
    model.train(was_training)
    return total / max(count, 1)

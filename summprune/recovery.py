"""Recovery fine-tuning after a pruning step: one function for every method, and the teacher.

``recover`` runs what a section's :class:`~summprune.config.RecoveryConfig` says: ``recover_steps``
optimizer steps (or ``recover_epochs`` epochs when steps is 0) with the ``Seq2SeqTrainer``, or,
when ``distill_alpha < 1`` or ``distill_features > 0``, with the
:class:`~summprune.distill.DistillationTrainer` towards the
run's frozen teacher, built once per run by :func:`make_teacher` from the model before the first
pruning method. With ``distill_sequences > 0`` that share of the training rows is trained on the
teacher's own summaries instead of the references (:mod:`summprune.seqkd`, generated once, cached).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from torch import nn

from .config import RecoveryConfig, TrainConfig
from .train import finetune


def make_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` (eval mode, no gradients) to distil from."""
    teacher = copy.deepcopy(model).eval()
    teacher.requires_grad_(False)
    return teacher


def recover(model: nn.Module, tokenizer, train_ds, train_cfg: TrainConfig, rc: RecoveryConfig, *,
            teacher: nn.Module | None = None, seed_offset: int = 0, output_dir: str | Path = "runs/recovery",
            log_path: str | Path | None = None, stage: str = "recover") -> dict:
    """Fine-tune ``model`` in place as ``rc`` says; returns the Trainer's numeric metrics.

    The learning rate is ``rc.learning_rate`` or the fine-tuning one; the seed is the training
    seed plus ``seed_offset`` (a new one per step: step-limited recoveries would otherwise all see
    the same batches). ``train.max_steps`` does not apply here: a recovery's length is its own.
    """
    if not rc.recovers():
        return {}
    kw: dict = {}
    if rc.distils() and teacher is None:
        raise ValueError(f"{stage}: distill_alpha={rc.distill_alpha} / distill_features={rc.distill_features} / "
                         f"distill_sequences={rc.distill_sequences} needs a teacher")
    if rc.distill_sequences > 0:
        from accelerate import PartialState

        from .seqkd import teacher_summaries, with_teacher_labels

        # the main process generates (or finds) the cache first; the others then read it
        with PartialState().main_process_first():
            summaries = teacher_summaries(teacher, train_ds, tokenizer.pad_token_id,
                                          num_beams=rc.distill_sequence_beams,
                                          batch_size=train_cfg.eval_batch_size, progress=train_cfg.progress_bar)
        train_ds = with_teacher_labels(train_ds, summaries, rc.distill_sequences, seed=train_cfg.seed)
    if rc.distill_alpha < 1.0 or rc.distill_features > 0:
        from .distill import DistillationTrainer

        kw = {"trainer_cls": DistillationTrainer,
              "trainer_kwargs": {"teacher": teacher, "alpha": rc.distill_alpha, "temperature": rc.distill_temperature,
                                 "features": rc.distill_features}}
    cfg = dataclasses.replace(train_cfg, seed=train_cfg.seed + seed_offset,
                              learning_rate=rc.learning_rate or train_cfg.learning_rate)
    m = finetune(model, tokenizer, train_ds, cfg, output_dir, epochs=rc.recover_epochs,
                 max_steps=rc.recover_steps if rc.recover_steps > 0 else -1, log_path=log_path, stage=stage, **kw)
    return {k: v for k, v in m.items() if isinstance(v, (int, float))}

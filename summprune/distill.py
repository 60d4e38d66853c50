"""Knowledge distillation from the dense model during recovery fine-tuning.

``loss = alpha * CE(student, labels) + (1 - alpha) * T**2 * KL(teacher_T || student_T)``

over the label positions that are not padding (``labels != -100``), where ``*_T`` are the
softmaxes at temperature ``T`` (Hinton et al. 2015; the ``T**2`` keeps the soft term's gradient
scale independent of ``T``). Both terms are sums over tokens divided by the same count: the
tokens of the batch, or the Trainer's ``num_items_in_batch`` (tokens of the whole accumulated,
and with ``average_tokens_across_devices`` all-device, batch), exactly as the model's own loss.

With ``features`` > 0, ``features * (F_enc + F_dec) / 2`` is added: feature distillation as
SquareHead computes it (Kurtic et al. 2023), for each student hidden state (embeddings output
and every layer's) the MSE to its teacher hidden state divided by the teacher state's mean
square, averaged over layers, over the real tokens only (attention mask; labels not -100). A
student with fewer layers (structured pruning) is mapped onto evenly spaced teacher layers, first
to first and last to last (:func:`layer_map`).

``DistillationTrainer`` is a ``Seq2SeqTrainer`` whose ``compute_loss`` runs the frozen teacher
(eval mode, no gradients, never wrapped by DDP: every process holds its own copy on its device)
on the same batch. It works on CPU, one GPU and under ``accelerate launch``/``torchrun``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Seq2SeqTrainer


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                 alpha: float = 0.5, temperature: float = 2.0,
                 num_items: int | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, ce, kl)``; ``kl`` is KL(teacher || student) at ``temperature`` (before ``T**2``)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha}: must be in [0, 1]")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: must be > 0")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape (same vocabulary needed)")
    keep = labels != -100
    s = student_logits[keep].float()
    t = teacher_logits[keep].float().detach()
    y = labels[keep]
    denom = num_items if num_items is not None else keep.sum().clamp(min=1)
    ce = F.cross_entropy(s, y, reduction="sum") / denom
    log_p_s = F.log_softmax(s / temperature, dim=-1)
    log_p_t = F.log_softmax(t / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum() / denom
    loss = alpha * ce + (1.0 - alpha) * temperature**2 * kl
    return loss, ce, kl


def layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Which teacher hidden state each of ``n_student`` student hidden states is compared with:
    evenly spaced, the first to the first (embeddings) and the last to the last."""
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"layer_map({n_student}, {n_teacher}): both need at least one hidden state")
    if n_student == 1:
        return [n_teacher - 1]
    return [round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)]


def feature_loss(student_states, teacher_states, mask: torch.Tensor) -> torch.Tensor:
    """SquareHead: mean over the student's hidden states of MSE(student, mapped teacher) / mean
    square of the teacher state, over the positions where ``mask`` (batch x length) is true."""
    idx = layer_map(len(student_states), len(teacher_states))
    keep = mask.bool()
    terms = []
    for s_i, t_i in zip(student_states, (teacher_states[j] for j in idx)):
        if s_i.shape[-1] != t_i.shape[-1]:
            raise ValueError(f"feature distillation: student width {s_i.shape[-1]} != teacher width {t_i.shape[-1]}")
        s, t = s_i[keep].float(), t_i[keep].float().detach()
        terms.append(((s - t) ** 2).mean() / (t ** 2).mean().clamp(min=1e-8))
    return torch.stack(terms).mean()


class DistillationTrainer(Seq2SeqTrainer):
    """``Seq2SeqTrainer`` with the distillation loss (``teacher``, ``alpha``, ``temperature``,
    and ``features``: the weight of feature distillation)."""

    def __init__(self, *args, teacher: torch.nn.Module, alpha: float = 0.5, temperature: float = 2.0,
                 features: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not 0.0 <= alpha <= 1.0 or temperature <= 0 or not features >= 0:
            raise ValueError(f"alpha={alpha} must be in [0, 1], temperature={temperature} > 0, features={features} >= 0")
        self.teacher = teacher.eval().to(self.args.device)
        self.teacher.requires_grad_(False)
        self.alpha = alpha
        self.temperature = temperature
        self.features = features
        self.last_terms: dict[str, torch.Tensor] = {}  # detached: no device sync per step

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        if labels is None:  # nothing to distil towards (e.g. predict without labels)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        hidden = {"output_hidden_states": True} if self.features > 0 else {}
        outputs = model(**inputs, **hidden)
        self.teacher.eval()  # Trainer puts `model` in train mode each step; the teacher stays in eval
        with torch.no_grad(), self.accelerator.autocast():
            t_out = self.teacher(**inputs, **hidden)
        loss, ce, kl = distill_loss(outputs.logits, t_out.logits, labels, alpha=self.alpha,
                                    temperature=self.temperature, num_items=num_items_in_batch)
        self.last_terms = {"ce": ce.detach(), "kl": kl.detach()}
        if self.features > 0:
            enc_mask = inputs.get("attention_mask")
            if enc_mask is None:
                enc_mask = torch.ones(inputs["input_ids"].shape, dtype=torch.bool, device=labels.device)
            feat = (feature_loss(outputs.encoder_hidden_states, t_out.encoder_hidden_states, enc_mask)
                    + feature_loss(outputs.decoder_hidden_states, t_out.decoder_hidden_states, labels != -100)) / 2
            self.last_terms["features"] = feat.detach()
        # Same bookkeeping as Trainer.compute_loss for a loss normalised by num_items_in_batch:
        # that count covers every device, and DDP averages gradients over devices.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            tp = self.get_tp_size() if hasattr(self, "get_tp_size") else 1
            loss = loss * (self.accelerator.num_processes // tp if self.args.n_gpu <= 1 else self.args.n_gpu)
        if self.features > 0:
            # a per-process mean, added after that scaling: DDP's gradient average makes it the mean
            loss = loss + self.features * feat
        return (loss, outputs) if return_outputs else loss

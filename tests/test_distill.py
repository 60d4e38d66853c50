"""Distillation loss: zero KL when student == teacher, right gradient sign, padding ignored,
and the Trainer subclass trains a tiny model on CPU."""

from __future__ import annotations

import copy

import pytest
import torch

from summprune.distill import DistillationTrainer, distill_loss


def _logits(seed, shape=(2, 5, 11)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def test_kl_is_zero_when_student_equals_teacher():
    t = _logits(0)
    labels = torch.randint(0, 11, (2, 5))
    loss, ce, kl = distill_loss(t.clone(), t, labels, alpha=0.3, temperature=2.0)
    assert abs(float(kl)) < 1e-6
    assert float(loss) == pytest.approx(0.3 * float(ce), abs=1e-6)
    # pure distillation of an identical student: zero loss
    assert abs(float(distill_loss(t.clone(), t, labels, alpha=0.0)[0])) < 1e-6


def test_kl_is_positive_and_matches_the_definition():
    s, t = _logits(1), _logits(2)
    labels = torch.tensor([[1, 2, 3, -100, -100], [4, 5, 6, 7, -100]])
    T = 3.0
    _, _, kl = distill_loss(s, t, labels, alpha=0.5, temperature=T)
    keep = labels != -100
    p = torch.softmax(t[keep] / T, -1)
    q = torch.softmax(s[keep] / T, -1)
    expected = (p * (p.log() - q.log())).sum() / keep.sum()
    assert float(kl) > 0 and float(kl) == pytest.approx(float(expected), rel=1e-5)


def test_gradient_moves_student_towards_teacher():
    t = torch.zeros(1, 1, 4)
    t[0, 0, 2] = 5.0  # the teacher is sure of class 2
    s = torch.zeros(1, 1, 4, requires_grad=True)
    loss, _, _ = distill_loss(s, t, torch.tensor([[0]]), alpha=0.0, temperature=2.0)
    loss.backward()
    g = s.grad[0, 0]
    assert g[2] < 0  # descent raises the teacher's class
    assert all(g[i] > 0 for i in (0, 1, 3))
    # and a gradient step lowers the loss
    s2 = (s - 0.5 * s.grad).detach()
    assert float(distill_loss(s2, t, torch.tensor([[0]]), alpha=0.0)[0]) < float(loss.detach())


def test_padding_positions_are_ignored():
    s, t = _logits(3), _logits(4)
    labels = torch.tensor([[1, 2, -100, -100, -100], [3, -100, -100, -100, -100]])
    s2 = s.clone()
    s2[0, 3:] += 100.0  # garbage where labels are padding
    a = distill_loss(s, t, labels)[0]
    b = distill_loss(s2, t, labels)[0]
    assert float(a) == pytest.approx(float(b))
    # num_items overrides the denominator (gradient accumulation across micro-batches)
    assert float(distill_loss(s, t, labels, num_items=6)[0]) == pytest.approx(float(a) * 3 / 6)


def test_alpha_one_is_plain_cross_entropy():
    s, t = _logits(5), _logits(6)
    labels = torch.randint(0, 11, (2, 5))
    loss, ce, _ = distill_loss(s, t, labels, alpha=1.0)
    assert float(loss) == pytest.approx(float(torch.nn.functional.cross_entropy(s.view(-1, 11), labels.view(-1))))


def test_bad_arguments():
    s = _logits(0)
    with pytest.raises(ValueError, match="alpha"):
        distill_loss(s, s, torch.zeros(2, 5, dtype=torch.long), alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        distill_loss(s, s, torch.zeros(2, 5, dtype=torch.long), temperature=0)
    with pytest.raises(ValueError, match="shape"):
        distill_loss(s, s[..., :5], torch.zeros(2, 5, dtype=torch.long))


def test_trainer_distills_on_cpu(tiny_model, tmp_path):
    import datasets

    from summprune.config import TrainConfig
    from summprune.tokenizer import train_tokenizer
    from summprune.train import finetune

    tok = train_tokenizer(["the act of congress amends the law"] * 4, vocab_size=100)  # for padding

    teacher = copy.deepcopy(tiny_model)
    rows = [{"input_ids": [5 + i % 7, 6, 7, 8, 1], "attention_mask": [1] * 5, "labels": [9, 10 + i % 5, 1]}
            for i in range(16)]
    ds = datasets.Dataset.from_list(rows)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cfg = TrainConfig(learning_rate=1e-2, batch_size=4, logging_steps=1)
    m = finetune(tiny_model, tok, ds, cfg, tmp_path / "t", max_steps=3, trainer_cls=DistillationTrainer,
                 trainer_kwargs={"teacher": teacher, "alpha": 0.5, "temperature": 2.0})
    assert m["global_step"] == 3 and m["train_loss"] > 0
    # the teacher is frozen and unchanged, the student moved
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert not torch.equal(tiny_model.lm_head.weight, teacher.lm_head.weight)


def test_layer_map_spreads_a_shallow_student_over_the_teacher():
    from summprune.distill import layer_map

    assert layer_map(7, 7) == list(range(7))  # same depth: one to one
    assert layer_map(4, 7) == [0, 2, 4, 6]    # embeddings to embeddings, last to last, evenly between
    assert layer_map(2, 7) == [0, 6]
    assert layer_map(1, 7) == [6]
    with pytest.raises(ValueError):
        layer_map(0, 3)


def test_feature_loss_is_zero_on_the_teacher_and_ignores_padding():
    from summprune.distill import feature_loss

    torch.manual_seed(0)
    t = [torch.randn(2, 5, 8) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert float(feature_loss(t, t, mask)) == 0.0
    s = [x.clone() for x in t]
    for x in s:
        x[0, 3:] += 100.0  # padding positions only
    assert float(feature_loss(s, t, mask)) == 0.0
    s[1][1, 0] += 1.0
    assert float(feature_loss(s, t, mask)) > 0
    # normalised: scaling both sides leaves it unchanged
    assert torch.allclose(feature_loss([3 * x for x in s], [3 * x for x in t], mask), feature_loss(s, t, mask))


FEATURES = 10.0  # the weight under test (with 0, cross-entropy alone, this test fails: checked)


def test_feature_distillation_trains_and_lowers_the_feature_gap(tiny_model, tmp_path):
    """distill_features > 0: the trainer adds the term, it is logged, and the student's hidden
    states move towards the teacher's (the gap after training is below the gap before)."""
    import datasets

    from summprune.config import TrainConfig
    from summprune.distill import feature_loss
    from summprune.tokenizer import train_tokenizer
    from summprune.train import finetune

    tok = train_tokenizer(["the act of congress amends the law"] * 4, vocab_size=100)
    teacher = copy.deepcopy(tiny_model).eval()
    torch.manual_seed(1)
    with torch.no_grad():  # a student that starts away from the teacher
        for p in tiny_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rows = [{"input_ids": [5 + i % 7, 6, 7, 8, 1], "attention_mask": [1] * 5, "labels": [9, 10 + i % 5, 1]}
            for i in range(16)]
    ds = datasets.Dataset.from_list(rows)
    x = torch.tensor([r["input_ids"] for r in rows[:4]])
    y = torch.tensor([r["labels"] for r in rows[:4]])

    def gap():
        tiny_model.eval()
        with torch.no_grad():
            s = tiny_model(input_ids=x, labels=y, output_hidden_states=True)
            t = teacher(input_ids=x, labels=y, output_hidden_states=True)
        return float(feature_loss(s.encoder_hidden_states, t.encoder_hidden_states, torch.ones_like(x)))

    before = gap()
    cfg = TrainConfig(learning_rate=3e-3, batch_size=4, logging_steps=1)
    m = finetune(tiny_model, tok, ds, cfg, tmp_path / "t", max_steps=12, trainer_cls=DistillationTrainer,
                 trainer_kwargs={"teacher": teacher, "alpha": 1.0, "temperature": 2.0, "features": FEATURES})
    assert m["global_step"] == 12
    assert gap() < 0.7 * before


def test_recovery_with_feature_distillation_needs_a_teacher_and_is_validated():
    from summprune.config import ConfigError, load_config
    from summprune.recovery import recover
    from summprune.config import RecoveryConfig, TrainConfig

    with pytest.raises(ConfigError, match="distill_features"):
        load_config(None, ["prune.gradual.target_nonzero_ratio=0.5", "prune.gradual.distill_features=-1"])
    with pytest.raises(ValueError, match="needs a teacher"):
        recover(None, None, None, TrainConfig(), RecoveryConfig(recover_steps=1, distill_alpha=1.0, distill_features=1.0))

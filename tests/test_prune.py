"""Pruning semantics, tied-embedding handling and honest sparsity, on tiny T5 models."""

from __future__ import annotations

import pytest
import torch

from summprune import prune as P
from summprune import sparsity as S
from summprune.config import GROUPS
from summprune.modeling import group_modules

X = torch.tensor([[5, 6, 7, 8, 9, 1]])
Y = torch.tensor([[10, 11, 12, 1]])


def logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=X, labels=Y).logits


def group_mask_zeros(model, group):
    mods = group_modules(model)[group]
    return sum(int((m.weight_mask == 0).sum()) for _, m in mods), sum(m.weight_mask.numel() for _, m in mods)


def test_groups_cover_every_linear_once(tiny_model):
    groups = group_modules(tiny_model)
    assert list(groups) == list(GROUPS)
    names = [n for mods in groups.values() for n, _ in mods]
    linears = [n for n, m in tiny_model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(names) == sorted(linears)
    assert len(groups["enc_self_attn"]) == 2 * 4 and len(groups["dec_ffn"]) == 2 * 2


def test_amount_is_fraction_of_unpruned(tiny_model):
    P.apply_stage(tiny_model, {"enc_ffn": 0.5})
    z, n = group_mask_zeros(tiny_model, "enc_ffn")
    assert z == round(0.5 * n)
    P.apply_stage(tiny_model, {"enc_ffn": 0.5})
    z2, _ = group_mask_zeros(tiny_model, "enc_ffn")
    # half of the remaining half: 75 % in all, not 100 %
    assert z2 == z + round(0.5 * (n - z))
    # groups not named are untouched
    assert not any(P.is_pruned(m) for _, m in group_modules(tiny_model)["dec_ffn"])


def test_pruning_is_global_l1_within_group(tiny_model):
    mods = [m for _, m in group_modules(tiny_model)["cross_attn"]]
    before = torch.cat([m.weight.detach().abs().flatten() for m in mods])
    P.apply_stage(tiny_model, {"cross_attn": 0.3})
    mask = torch.cat([m.weight_mask.flatten() for m in mods])
    assert before[mask == 0].max() <= before[mask == 1].min()
    # global, not per layer: the per-module fractions differ
    fracs = {round(float((m.weight_mask == 0).float().mean()), 3) for m in mods}
    assert len(fracs) > 1


@pytest.mark.parametrize("amount", [-0.1, 1.0, 1.5])
def test_invalid_amount_rejected(tiny_model, amount):
    with pytest.raises(ValueError, match="amount"):
        P.apply_stage(tiny_model, {"enc_ffn": amount})


def test_unknown_group_rejected(tiny_model):
    with pytest.raises(ValueError, match="unknown group"):
        P.apply_stage(tiny_model, {"decoder_ffn": 0.1})


def test_masks_survive_optimizer_steps(tiny_model):
    P.apply_stage(tiny_model, {g: 0.5 for g in GROUPS})
    zero_before = {n: (m.weight_mask == 0) for n, m in tiny_model.named_modules() if hasattr(m, "weight_mask")}
    orig_before = {n: m.weight_orig.detach().clone() for n, m in tiny_model.named_modules() if hasattr(m, "weight_mask")}
    opt = torch.optim.AdamW(tiny_model.parameters(), lr=1e-2, weight_decay=0.1)
    tiny_model.train()
    for _ in range(3):
        loss = tiny_model(input_ids=X, labels=Y).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    tiny_model(input_ids=X, labels=Y)  # forward recomputes .weight from orig * mask
    for n, m in tiny_model.named_modules():
        if n in zero_before:
            assert torch.all(m.weight[zero_before[n]] == 0), n
            assert torch.equal(m.weight_mask == 0, zero_before[n])
    # and the optimizer did change the unmasked weights (the masked ones stay zero in use)
    for n, m in tiny_model.named_modules():
        if n in zero_before:
            kept = ~zero_before[n]
            assert not torch.equal(P.current_weight(m)[kept], orig_before[n][kept]), n
    assert S.nonzero_ratio(tiny_model) == pytest.approx(S.mask_ratio(tiny_model), abs=1e-3)


def test_tied_mode_prunes_embedding_for_every_use(tiny_model):
    P.prepare_model(tiny_model, "tied")
    P.apply_stage(tiny_model, {"lm_head": 0.6}, tie_mode="tied")
    head, emb = tiny_model.lm_head, tiny_model.shared
    assert head.weight_mask is emb.weight_mask is tiny_model.encoder.embed_tokens.weight_mask
    ids = torch.arange(20).unsqueeze(0)
    pruned_rows = (head.weight_orig * head.weight_mask)[:20]
    assert torch.equal(tiny_model.encoder.embed_tokens(ids)[0], pruned_rows)
    assert torch.equal(tiny_model.decoder.embed_tokens(ids)[0], pruned_rows)
    # one tensor, one mask: the honest ratio equals the course ratio
    assert S.nonzero_ratio(tiny_model) == pytest.approx(S.mask_ratio(tiny_model), abs=1e-6)
    out = logits(tiny_model)
    P.make_permanent(tiny_model)
    assert tiny_model.lm_head.weight is tiny_model.shared.weight is tiny_model.encoder.embed_tokens.weight
    assert torch.equal(logits(tiny_model), out)
    assert not any(n.endswith(("_orig", "_mask")) for n, _ in tiny_model.state_dict().items())


def test_course_mode_leaves_embedding_dense_and_says_so(tiny_model):
    P.prepare_model(tiny_model, "course")
    P.apply_stage(tiny_model, {"lm_head": 0.6}, tie_mode="course")
    assert not P.is_pruned(tiny_model.shared)
    vocab_params = tiny_model.shared.weight.numel()
    dense = S.dense_param_count(tiny_model)
    # the course formula counts the mask zeros, the model still computes with the dense embedding
    assert S.mask_ratio(tiny_model) == pytest.approx(1 - round(0.6 * vocab_params) / dense)
    assert S.nonzero_ratio(tiny_model) == pytest.approx(1 + (vocab_params - round(0.6 * vocab_params)) / dense)
    table = S.group_table(tiny_model)
    assert table["input_embedding"]["nonzero_ratio"] == 1.0
    out = logits(tiny_model)
    P.make_permanent(tiny_model)
    assert tiny_model.lm_head.weight is not tiny_model.shared.weight
    assert torch.count_nonzero(tiny_model.shared.weight) == vocab_params
    assert torch.equal(logits(tiny_model), out)


def test_untie_mode_gives_lm_head_its_own_copy(tiny_model):
    out = logits(tiny_model)
    P.prepare_model(tiny_model, "untie")
    assert tiny_model.lm_head.weight is not tiny_model.shared.weight
    assert torch.equal(logits(tiny_model), out)  # untying alone changes nothing
    P.apply_stage(tiny_model, {"lm_head": 0.5}, tie_mode="untie")
    assert not P.is_pruned(tiny_model.shared)
    # both copies counted: the extra lm_head is in model.parameters() for the course formula
    total = sum(p.numel() for p in tiny_model.parameters())
    assert total == S.dense_param_count(tiny_model) + tiny_model.shared.weight.numel()
    assert S.nonzero_ratio(tiny_model) > S.mask_ratio(tiny_model)


def test_make_permanent_keeps_outputs_all_groups(tiny_model):
    P.apply_stage(tiny_model, {g: 0.4 for g in GROUPS})
    P.apply_stage(tiny_model, {g: 0.2 for g in GROUPS})
    ratio = S.nonzero_ratio(tiny_model)
    out = logits(tiny_model)
    P.make_permanent(tiny_model)
    assert torch.equal(logits(tiny_model), out)
    assert S.nonzero_ratio(tiny_model) == pytest.approx(ratio)
    assert not any(P.is_pruned(m) for m in tiny_model.modules())


def test_stage_ranks_the_current_weights_not_the_last_forward(tiny_model):
    """A stage after recovery must rank by weight_orig * weight_mask: the module's cached
    ``weight`` is from the last forward pass, one optimizer step stale."""
    P.apply_stage(tiny_model, {"enc_ffn": 0.5})
    ffn = [m for _, m in group_modules(tiny_model)["enc_ffn"]]
    with torch.no_grad():  # an "optimizer step" with no forward after it
        for i, m in enumerate(ffn):
            m.weight_orig.mul_(torch.rand(m.weight_orig.shape, generator=torch.Generator().manual_seed(i)) * 10)
    now = torch.cat([(m.weight_orig * m.weight_mask).detach().abs().flatten() for m in ffn])
    P.apply_stage(tiny_model, {"enc_ffn": 0.5})
    after = torch.cat([(m.weight_orig * m.weight_mask).detach().abs().flatten() for m in ffn])
    kept, dropped = now[after != 0], now[(after == 0) & (now != 0)]
    assert float(kept.min()) >= float(dropped.max())

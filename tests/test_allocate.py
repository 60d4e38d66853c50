"""Per-group allocation: every method hits the budget exactly; 'auto' spares a sensitive group."""

from __future__ import annotations

import math

import pytest
import torch

from summprune import allocate as A
from summprune.modeling import group_modules

PARAMS = {"a": 1000, "b": 4000, "c": 2500}


def test_integerize_hits_total_within_caps():
    real = {"a": 10.6, "b": 20.6, "c": 5.9}
    out = A.integerize(real, 37, {"a": 11, "b": 21, "c": 5})
    assert sum(out.values()) == 37 and out["c"] <= 5
    assert all(abs(out[g] - real[g]) <= 1.0 for g in ("a", "b"))
    with pytest.raises(ValueError):
        A.integerize(real, 100, {"a": 11, "b": 21, "c": 5})


@pytest.mark.parametrize("budget", [0, 1, 750, 3000, 7499, 7500])
def test_uniform_and_reference_hit_the_budget(budget):
    u = A.uniform(PARAMS, dict(PARAMS), budget)
    assert sum(u.values()) == budget
    fr = [u[g] / PARAMS[g] for g in PARAMS]
    assert max(fr) - min(fr) <= 2 / min(PARAMS.values())
    r = A.reference(PARAMS, dict(PARAMS), budget)
    assert sum(r.values()) == budget and all(0 <= r[g] <= PARAMS[g] for g in PARAMS)


def test_uniform_respects_groups_already_sparser():
    unpruned = {"a": 100, "b": 4000, "c": 2500}  # 'a' already at 10%
    u = A.uniform(PARAMS, unpruned, 3000)
    assert u["a"] == 100 and sum(u.values()) == 3000


def test_reference_keeps_the_recipe_proportions():
    ref = A.reference_keep()
    assert ref["enc_ffn"] == pytest.approx(0.9 ** 5) and ref["lm_head"] == pytest.approx(0.7 ** 5 * 0.8)
    params = {g: 10_000 for g in ref}
    keep = A.reference(params, dict(params), 10_000)  # one sixth overall
    c = math.log(keep["enc_ffn"] / 10_000) / math.log(ref["enc_ffn"])
    for g in ref:  # each group keeps r_g ** c
        assert keep[g] / 10_000 == pytest.approx(ref[g] ** c, abs=2e-4)


def test_global_magnitude_keeps_the_largest():
    torch.manual_seed(0)
    ts = {"a": [torch.randn(10, 10)], "b": [torch.randn(20, 5) * 3, torch.randn(3)]}
    keep = A.global_magnitude(ts, 60)
    assert sum(keep.values()) == 60
    allv = torch.cat([t.abs().flatten() for v in ts.values() for t in v])
    thr = allv.sort(descending=True).values[59]
    assert keep["a"] == int((ts["a"][0].abs() >= thr).sum())
    assert keep["b"] > keep["a"]  # larger weights


def _curves(sensitive: str | None):
    levels = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
    curves = {}
    for g in PARAMS:
        k = 50.0 if g == sensitive else 1.0
        curves[g] = [2.0 + k * s ** 3 for s in levels]
    return {"base": 2.0, "levels": levels, "curves": curves}


@pytest.mark.parametrize("budget", [750, 1500, 3000, 5000])
def test_auto_hits_the_budget_and_spares_the_sensitive_group(budget):
    plain, _ = A.auto(PARAMS, dict(PARAMS), budget, _curves(None))
    assert sum(plain.values()) == budget
    keep, info = A.auto(PARAMS, dict(PARAMS), budget, _curves("b"))
    assert sum(keep.values()) == budget
    sp = {g: 1 - keep[g] / PARAMS[g] for g in PARAMS}
    assert sp["b"] < sp["a"] and sp["b"] < sp["c"]
    assert sp["b"] < 1 - plain["b"] / PARAMS["b"]
    assert info["predicted_loss"] >= 2.0


def test_auto_refuses_beyond_the_measured_levels():
    with pytest.raises(ValueError, match="sensitivity_levels"):
        A.auto(PARAMS, dict(PARAMS), 10, _curves(None))  # needs > 98 % everywhere


def test_measure_sensitivity_restores_and_sees_a_sensitive_group(tiny_model):
    x = torch.tensor([[5, 6, 7, 8, 9, 1]])
    y = torch.tensor([[10, 11, 12, 1]])
    groups = {g: [m for _, m in mods] for g, mods in group_modules(tiny_model).items()}
    ffn = groups["enc_ffn"]

    def loss_fn():
        with torch.no_grad():
            loss = float(tiny_model(input_ids=x, labels=y).loss)
        # make enc_ffn artificially sensitive: a penalty on its zeroed weights
        zeros = sum(int((m.weight == 0).sum()) for m in ffn) / sum(m.weight.numel() for m in ffn)
        return loss + 20.0 * zeros

    tiny_model.eval()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    sens = A.measure_sensitivity(groups, loss_fn, levels=[0.5, 0.8, 0.95])
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())
    assert sens["curves"]["enc_ffn"][-1] > sens["base"] + 15
    params = {g: sum(m.weight.numel() for m in ms) for g, ms in groups.items()}
    budget = int(0.3 * sum(params.values()))
    keep, _ = A.auto(params, dict(params), budget, sens)
    assert sum(keep.values()) == budget
    sp = {g: 1 - keep[g] / params[g] for g in params}
    assert sp["enc_ffn"] == min(sp.values())

"""The method interface: a method defined only here plugs in through the registry and runs from
a TOML section, through the one driver, with no edit to the package; the driver's order rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest
import torch
from torch.nn.utils import prune as torch_prune

from conftest import ROOT
from summprune import prune as P
from summprune import sparsity as S
from summprune.config import ConfigError, RecoveryConfig, load_config
from summprune.methods import REGISTRY, Method, Step, build_methods, register
from summprune.modeling import group_modules


@dataclass
class RandomConfig(RecoveryConfig):
    fraction: float = 0.5  # of each group's unpruned weights, chosen at random
    seed: int = 0


@register
class RandomPruning(Method):
    """Random unstructured pruning: a control, and the smallest possible method."""

    name = "random_test"
    config_cls = RandomConfig

    @staticmethod
    def validate(config, prune_cfg, bad):
        if not 0.0 <= config.fraction < 1.0:
            bad(f".fraction={config.fraction}: must be in [0, 1)")

    def prepare(self, model):
        P.prepare_model(model, self.tie_mode)

    def plan(self, model, ctx):
        groups = group_modules(model, self.patterns)
        return {"seed": self.config.seed,
                "keep": {g: round((1 - self.config.fraction) * sum(P.unpruned_count(m) for _, m in mods))
                         for g, mods in groups.items()}}

    def steps(self, plan):
        rc = self.config.recovery()
        return [Step(1, plan, rc if rc.recovers() else None)]

    def apply(self, model, step, ctx):
        gen = torch.Generator().manual_seed(step.payload["seed"])
        for g, mods in group_modules(model, self.patterns).items():
            mods = [m for _, m in mods]
            n = sum(P.unpruned_count(m) for m in mods) - step.payload["keep"][g]
            scores = {(m, "weight"): torch.rand(m.weight.shape, generator=gen) for m in mods}
            torch_prune.global_unstructured([(m, "weight") for m in mods], pruning_method=torch_prune.L1Unstructured,
                                            importance_scores=scores, amount=n)
        if self.tie_mode == "tied":
            P.sync_tied_masks(model)
        return model, {"random_seed": step.payload["seed"]}

    def record(self, plan):
        return {"keep": plan["keep"]}


def test_a_method_defined_in_a_test_runs_from_its_toml_section(tmp_path, tiny_dir, capsys):
    from summprune.__main__ import main as cli

    recipe = tmp_path / "random.toml"
    recipe.write_text("# python -m summprune prune --model DIR --config random.toml --output OUT\n"
                      "name = 'random'\nexport_format = 'compact'\n[prune.random_test]\nfraction = 0.6\nseed = 3\n")
    out = tmp_path / "out"
    assert cli(["prune", "--model", str(tiny_dir), "--config", str(recipe), "--output", str(out), "--no-train"]) == 0
    info = json.loads((out / "pruning.json").read_text())
    assert [s["method"] for s in info["stages"]] == ["random_test"]
    assert info["recipe"]["random_test"]["fraction"] == 0.6 and "keep" in info["random_test"]
    for g, row in info["final"]["groups"].items():
        assert row["mask_ratio"] == pytest.approx(0.4, abs=2e-3), g
    # random, not magnitude: the kept weights are not the largest ones
    from summprune.export import load_model

    m = load_model(out)
    w = m.encoder.block[0].layer[1].DenseReluDense.wi.weight.abs().flatten()
    kept, dropped = w[w != 0], w[w == 0]
    assert dropped.numel() > 0 and float(kept.min()) < 0.5 * float(kept.max())
    # its validator runs on load, naming the file and key
    recipe.write_text("[prune.random_test]\nfraction = 1.5\n")
    with pytest.raises(ConfigError, match=r"random.toml: prune.random_test.fraction=1.5"):
        load_config(recipe)
    # and so does the shared recovery validator
    recipe.write_text("[prune.random_test]\ndistill_alpha = 3\n")
    with pytest.raises(ConfigError, match=r"prune.random_test.distill_alpha"):
        load_config(recipe)


def test_structural_methods_run_first_then_file_order(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[prune.random_test]\nfraction = 0.1\n[prune.structured]\nffn_keep = 0.5\nimportance = 'weight'\n"
                      "[[prune.stages]]\namounts = { enc_ffn = 0.2 }\n")
    cfg = load_config(recipe)
    assert list(cfg.prune.methods) == ["random_test", "structured", "stages"]  # file order
    assert [m.name for m in build_methods(cfg.prune)] == ["structured", "random_test", "stages"]
    assert set(REGISTRY) >= {"stages", "gradual", "structured", "random_test"}


def test_every_config_gives_the_same_counts_through_the_driver(tiny_model):
    """One cut for stages and gradual: the stages' exact counts are what torch's float amounts
    prune (round(amount * unpruned)), so apply_stage and the driver agree to the weight."""
    import copy

    from summprune.pipeline import prune_model

    cfg = load_config(ROOT / "configs" / "seed.toml")
    a = copy.deepcopy(tiny_model)
    for st in cfg.prune.stages:
        for _ in range(st.repeat):
            # torch's own float amounts, group by group: the reference
            for g, amount in st.amounts.items():
                mods = [m for _, m in group_modules(a)[g]]
                if amount:
                    torch_prune.global_unstructured([(m, "weight") for m in mods], pruning_method=torch_prune.L1Unstructured,
                                                    importance_scores={(m, "weight"): P.current_weight(m) for m in mods},
                                                    amount=amount)
            P.sync_tied_masks(a)
    b, records, _ = prune_model(copy.deepcopy(tiny_model), None, cfg, log_print=lambda s: None)
    assert len(records) == 6
    for (na, ma), (nb, mb) in zip(a.named_buffers(), b.named_buffers()):
        assert na == nb and torch.equal(ma, mb), na
    assert S.mask_ratio(a) == S.mask_ratio(b)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_two_process_prune_writes_one_model_equal_to_one_process(tmp_path, tiny_dir):
    """`accelerate launch --num_processes 2 -m summprune prune ...`: the plan is made once and
    broadcast, only the main process writes, and the model equals the one-process result."""
    from summprune.export import load_model

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    args = ["-m", "summprune", "prune", "--model", str(tiny_dir), "--config", str(ROOT / "configs" / "seed.toml"),
            "--no-train"]
    two = subprocess.run(["accelerate", "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", *args, "--output", str(tmp_path / "two")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(["python", *args, "--output", str(tmp_path / "one")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.stdout.count("wrote ") == 1  # one process reports, one writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "tiny", "two"]  # no second copy, no temp dir
    ma, mb = load_model(tmp_path / "one"), load_model(tmp_path / "two")
    sa, sb = ma.state_dict(), mb.state_dict()
    assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    ia = json.loads((tmp_path / "one" / "pruning.json").read_text())
    ib = json.loads((tmp_path / "two" / "pruning.json").read_text())
    assert ia["stages"] == ib["stages"] and round(ia["final"]["mask_ratio"], 4) == round(ib["final"]["mask_ratio"], 4)


def test_gradual_and_structured_importances_are_one_criterion_contract(tiny_model):
    """Both methods' importances are one type, registered one way and given training batches one
    way: every entry of CRITERIA and SCORERS is a base.Criterion; a criterion that needs data is
    refused in a run without training data with one message naming its option and the data-free
    choice; one registered with @criterion into SCORERS is what structured pruning then scores by."""
    from summprune.methods import base
    from summprune.methods.gradual import CRITERIA
    from summprune.methods.structured import SCORERS, shrink

    assert CRITERIA and SCORERS
    assert all(type(c) is base.Criterion for c in [*CRITERIA.values(), *SCORERS.values()])
    assert {n for n, c in CRITERIA.items() if c.needs_data} == {"wanda", "obs"}
    assert {n for n, c in SCORERS.items() if c.needs_data} == {"taylor"}
    ctx = base.Context()  # no training data, as with --no-train
    for registry, option, instead in ((CRITERIA, "prune.gradual.importance='wanda'", "importance='magnitude'"),
                                      (SCORERS, "prune.structured.importance='taylor'", "importance='weight'")):
        needy = registry[option.split("'")[1]]
        with pytest.raises(ValueError, match=f"^{option} measures on training data.*--no-train.*use {instead}$"):
            base.criterion_batches(needy, option, tiny_model, ctx, 2, instead)
        free = next(c for c in registry.values() if not c.needs_data)
        assert base.criterion_batches(free, option, tiny_model, ctx, 2, instead) is None

    seen = []

    @base.criterion(SCORERS, "first_kept_test")
    def _first(model, batches):
        # the weight scores, with one neuron of every FFN scored highest: it must be kept
        scores = SCORERS["weight"].fn(model, batches)
        seen.append(batches)
        for name in scores:
            scores[name][0] = 1e9
        return scores

    try:
        small, plan = shrink(tiny_model, importance="first_kept_test", ffn_keep=0.5)
        assert seen == [None] and plan.ffn and all(0 in kept for kept in plan.ffn.values())
    finally:
        del SCORERS["first_kept_test"]

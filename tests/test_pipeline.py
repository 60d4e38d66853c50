"""The whole pipeline and the CLI on a tiny budget: run folder, pruning.json, export, DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT
from summprune.__main__ import main as cli
from summprune.config import load_config
from summprune.pipeline import run

TINY = ["data.synthetic_docs=64", "data.val_size=6", "eval.docs=6", "eval.max_length=24",
        "eval.batch_size=6", "train.max_steps=6", "train.logging_steps=2", "model.tiny_d_model=32",
        "model.tiny_d_ff=64", "model.tiny_vocab=400"]


def read_jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_run_writes_run_folder_and_loadable_model(tmp_path):
    cfg = load_config(ROOT / "configs" / "smoke.toml",
                      TINY + [f"runs_dir={tmp_path}", f"output_dir={tmp_path / 'model'}", "export_format=hf"])
    for st in cfg.prune.stages:
        st.recover_steps = 2
    summary = run(cfg, log_print=lambda s: None)
    run_dir = tmp_path / "smoke"
    # the figures too: the README says the run writes them (they came only from the notebook)
    assert {"config.json", "metrics.jsonl", "summary.json", "score_vs_ratio.png", "group_sparsity.png"} <= {
        p.name for p in run_dir.iterdir()}
    assert json.loads((run_dir / "config.json").read_text())["train"]["max_steps"] == 6
    events = [r["event"] for r in read_jsonl(run_dir / "metrics.jsonl")]
    assert events[0] == "initial" and "finetuned" in events and events.count("stage") == 3
    assert "train_log" in events and events[-1] == "export"

    info = json.loads((tmp_path / "model" / "pruning.json").read_text())
    assert len(info["stages"]) == 3
    for st in info["stages"] + [info["final"]]:
        assert {"mask_ratio", "nonzero_ratio", "groups"} <= set(st)
    ratios = [s["mask_ratio"] for s in info["stages"]]
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] < 0.6
    assert summary["final"]["nonzero_ratio"] == pytest.approx(info["final"]["nonzero_ratio"])

    # plain transformers loads it offline, and it computes with the pruned weights
    from transformers import AutoModelForSeq2SeqLM

    from summprune.sparsity import nonzero_ratio

    plain = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "model")
    assert nonzero_ratio(plain) == pytest.approx(info["final"]["nonzero_ratio"])
    assert plain.lm_head.weight is plain.shared.weight
    assert not list((tmp_path / "model").glob("*.bin"))

    # the model card: the run's own scores before (the fine-tuned model) and after pruning
    from summprune.card import front_matter

    card = (tmp_path / "model" / "README.md").read_text()
    fm = front_matter(card)
    assert fm["pipeline_tag"] == "summarization" and "base_model" not in fm  # 'tiny' is no hub model
    before = info["quality"]["before"]
    assert info["quality"]["eval_docs"] == 6
    assert f"| before pruning | {before['kaggle_score']:.4f} | {before['rougeLsum']:.4f} |" in card
    assert f"| after pruning | {info['final']['kaggle_score']:.4f} | {info['final']['rougeLsum']:.4f} |" in card
    assert summary["finetuned"]["kaggle_score"] == before["kaggle_score"]

    # a second run of the same config continues the folder: it reuses the fine-tuned model and
    # goes on after the last completed step (all done here: it only exports again)
    run(cfg, log_print=lambda s: None)
    logs = read_jsonl(run_dir / "metrics.jsonl")
    ft = [r for r in logs if r["event"] == "finetune"]
    assert len(ft) == 2 and "reused" in ft[-1]
    assert [r["event"] for r in logs].count("stage") == 3 and logs[-1]["event"] == "export"
    assert json.loads((tmp_path / "model" / "pruning.json").read_text())["stages"] == info["stages"]


def test_cli_prune_no_train_writes_stage_ratios(tmp_path, tiny_dir, capsys):
    out = tmp_path / "pruned"
    assert cli(["prune", "--model", str(tiny_dir), "--config", str(ROOT / "configs" / "seed.toml"),
                "--output", str(out), "--no-train"]) == 0
    info = json.loads((out / "pruning.json").read_text())
    assert len(info["stages"]) == 6 and set(info["final"]) >= {"mask_ratio", "nonzero_ratio", "groups"}
    # tied mode: every stage's honest ratio equals the course ratio
    for st in info["stages"]:
        assert st["nonzero_ratio"] == pytest.approx(st["mask_ratio"], abs=1e-9)
    assert "wrote" in capsys.readouterr().out
    assert cli(["report", "--model", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{info['final']['nonzero_ratio']:.4f}" in printed
    # the command is recorded, and the course directory carries its card, which report prints
    assert info["command"].startswith("python -m summprune prune --model ") and info["command"].endswith("--no-train")
    assert f"`{info['command']}`" in (out / "README.md").read_text() and (out / "README.md").read_text() in printed
    assert info["base_model"] == str(tiny_dir) and "quality" not in info and "## Quality" not in printed
    # the course's format, and the recipe's decoding shipped for generate_csv.py
    assert (out / "model_state_dict.pth").is_file()
    gen = json.loads((out / "generation_config.json").read_text())
    assert (gen["max_length"], gen["num_beams"], gen["no_repeat_ngram_size"]) == (128, 5, 3)
    assert "length_penalty" not in gen or gen["length_penalty"] in (None, 1.0)


def test_cli_errors_are_clear(tmp_path, tiny_dir, capsys):
    rc = cli(["prune", "--model", str(tmp_path / "nope"), "--config", str(ROOT / "configs" / "seed.toml"),
              "--output", str(tmp_path / "o"), "--no-train"])
    assert rc == 2 and "nope" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[[prune.stages]]\namounts = { enc_ffn = 1.2 }\n")
    rc = cli(["prune", "--model", str(tiny_dir), "--config", str(bad), "--output", str(tmp_path / "o"), "--no-train"])
    assert rc == 2 and "bad.toml" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_two_process_finetune_under_accelerate(tmp_path):
    """The multi-process path without GPUs: two CPU processes (gloo) fine-tune, prune, export."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = ["accelerate", "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "summprune", "run",
           str(ROOT / "configs" / "smoke.toml"), *TINY, "name=ddp", f"runs_dir={tmp_path}",
           f"output_dir={tmp_path / 'model'}",
           # structured removal too: both processes must build the same smaller shape for DDP
           "prune.structured.ffn_keep=0.5", "prune.structured.heads_keep=0.5",
           "prune.structured.importance_batches=2", "prune.structured.recover_steps=2"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["final"]["nonzero_ratio"] < 0.6
    logs = read_jsonl(tmp_path / "ddp" / "metrics.jsonl")
    ft = [r for r in logs if r["event"] == "finetune"]
    assert ft and ft[0]["global_step"] == 6
    # one line per event: only the main process writes
    assert sum(r["event"] == "initial" for r in logs) == 1
    assert (tmp_path / "model" / "compact.json").is_file()
    info = json.loads((tmp_path / "model" / "pruning.json").read_text())
    assert info["structured"]["params_after"] < info["structured"]["params_before"]
    # step 1 is the structured removal; its recovery (recover-1) trained under both processes
    assert [r["method"] for r in logs if r["event"] == "stage"][0] == "structured"
    assert any(r.get("stage") == "recover-1" and r.get("event") == "train_log" for r in logs)

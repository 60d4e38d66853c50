"""Kill -9 a `run` at three points (fine-tuning, a stage's recovery, the export), start it again
with the same command each time: it continues where it stopped and ends with the counts of an
uninterrupted run, and no partial model directory is ever left in place of the output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT

ARGS = ["model.name=tiny", "model.tiny_d_model=16", "model.tiny_d_ff=32", "model.tiny_vocab=200",
        "data.dataset=synthetic", "data.synthetic_docs=24", "data.val_size=4", "data.max_source_length=32",
        "data.max_target_length=16", "train.epochs=2", "train.save_steps=2", "eval.docs=2",
        "prune.stages.0.recover_steps=3", "prune.stages.1.recover_steps=3"]


def launch(tmp_path, runs: str, fault: str | None):
    env = {k: v for k, v in os.environ.items() if k != "SUMMPRUNE_FAULT"}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if fault:
        env["SUMMPRUNE_FAULT"] = fault
    cmd = [sys.executable, "-m", "summprune", "run", str(ROOT / "configs" / "smoke.toml"), *ARGS,
           f"runs_dir={tmp_path / runs}", f"output_dir={tmp_path / runs / 'model'}"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def counts(path):
    info = json.loads((path / "pruning.json").read_text())
    return [(s["stage"], s["method"], s["nonzero"], round(s["mask_ratio"], 10)) for s in info["stages"]], info["final"]["nonzero"]


@pytest.mark.slow
def test_kill_and_resume_at_three_points_gives_the_uninterrupted_counts(tmp_path):
    ref = launch(tmp_path, "ref", None)
    assert ref.returncode == 0, ref.stderr[-2000:]

    killed = -signal.SIGKILL
    r = launch(tmp_path, "runs", "finetune:3")  # after 3 of 6 fine-tuning steps (a checkpoint at 2)
    assert r.returncode == killed, r.stderr[-2000:]
    assert list((tmp_path / "runs" / "smoke" / "trainer" / "finetune").glob("checkpoint-2"))
    assert not (tmp_path / "runs" / "model").exists()

    r = launch(tmp_path, "runs", "recover-2:1")  # fine-tuning resumes; killed in step 2's recovery
    assert r.returncode == killed, r.stderr[-2000:]
    assert "continuing the run" in r.stdout
    assert json.loads((tmp_path / "runs" / "smoke" / "steps" / "latest" / "step.json").read_text())["step"] == 1

    r = launch(tmp_path, "runs", "export")  # goes on after step 1; killed with the export written, not in place
    assert r.returncode == killed, r.stderr[-2000:]
    assert "resuming after step 1" in r.stdout
    assert not (tmp_path / "runs" / "model").exists()  # no partial model directory in its place
    assert list((tmp_path / "runs").glob("model.tmp-*"))  # what the kill left behind

    r = launch(tmp_path, "runs", None)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming after step 3" in r.stdout  # every step was done: it only exported again
    assert counts(tmp_path / "runs" / "model") == counts(tmp_path / "ref" / "model")
    assert not list((tmp_path / "runs").glob("model.tmp-*")) and not list((tmp_path / "runs").glob("model.old-*"))
    assert not (tmp_path / "runs" / ".smoke.lock").exists()
    logs = [json.loads(x) for x in (tmp_path / "runs" / "smoke" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert [r["stage"] for r in logs if r["event"] == "stage"] == [1, 2, 3]  # each step logged once

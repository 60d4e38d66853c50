"""`prune` is resumable as `run` is: kill -9 it at three points (the first step's recovery, the
second step's recovery, the export), start the same command again each time; it continues after
its last completed step and ends with the counts of an uninterrupted prune. Its work folder
(`<output>.trainer/`) is adopted only when it is one, and only for the same request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT

ARGS = ["data.dataset=synthetic", "data.synthetic_docs=24", "data.val_size=4", "data.max_source_length=32",
        "data.max_target_length=16", "train.batch_size=4", "prune.stages.0.repeat=2",
        "prune.stages.0.recover_steps=2", "prune.stages.1.recover_steps=2", "export_format=compact"]


def launch(model, out, fault: str | None, *extra: str):
    env = {k: v for k, v in os.environ.items() if k != "SUMMPRUNE_FAULT"}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if fault:
        env["SUMMPRUNE_FAULT"] = fault
    cmd = [sys.executable, "-m", "summprune", "prune", "--model", str(model), "--config",
           str(ROOT / "configs" / "seed.toml"), "--output", str(out), *ARGS, *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def counts(path):
    info = json.loads((path / "pruning.json").read_text())
    return [(s["stage"], s["method"], s["nonzero"], round(s["mask_ratio"], 10)) for s in info["stages"]]


@pytest.fixture(params=["t5", "bart"])
def family_dir(request, tmp_path, tiny_dir):
    """A tiny model directory of each layout: t5-small's, and BART's (steps rebuilt by its family)."""
    if request.param == "t5":
        return tiny_dir
    from summprune.modeling import build_tiny_model
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    d = tmp_path / "tiny_bart"
    build_tiny_model(vocab_size=100, d_model=32, layers=2, heads=4, d_ff=64, family="bart").save_pretrained(d)
    train_tokenizer([r["text"] for r in make_corpus(20)], vocab_size=100).save_pretrained(d)
    return d


@pytest.mark.slow
def test_prune_killed_at_three_points_resumes_to_the_uninterrupted_counts(tmp_path, family_dir):
    tiny_dir = family_dir
    ref = launch(tiny_dir, tmp_path / "ref", None)
    assert ref.returncode == 0, ref.stderr[-2000:]
    out, work = tmp_path / "out", tmp_path / "out.trainer"
    killed = -signal.SIGKILL

    r = launch(tiny_dir, out, "recover-1:1")  # in the first step's recovery: nothing completed yet
    assert r.returncode == killed, r.stderr[-2000:]
    assert (work / "prune.json").is_file() and not (work / "steps" / "latest").exists()

    r = launch(tiny_dir, out, "recover-2:1")  # starts again; killed in the second step's recovery
    assert r.returncode == killed, r.stderr[-2000:]
    assert "continuing the prune" in r.stdout
    assert json.loads((work / "steps" / "latest" / "step.json").read_text())["step"] == 1

    r = launch(tiny_dir, out, "export")  # goes on after step 1; killed with the export written, not in place
    assert r.returncode == killed, r.stderr[-2000:]
    assert "resuming after step 1" in r.stdout
    assert not out.exists()

    r = launch(tiny_dir, out, None)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming after step 3" in r.stdout  # every step was done: it only exported again
    assert counts(out) == counts(tmp_path / "ref")
    assert not list(tmp_path.glob("out.tmp-*")) and not list(tmp_path.glob(".out.lock"))
    logs = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert [r["stage"] for r in logs if r["event"] == "stage"] == [1, 2, 3]  # appended, each step once
    assert [r["event"] for r in logs].count("export") == 1


def test_prune_refuses_another_request_and_a_foreign_work_folder(tmp_path, tiny_dir, capsys):
    from summprune.__main__ import main as cli

    def prune(out, *extra):
        return cli(["prune", "--model", str(tiny_dir), "--config", str(ROOT / "configs" / "seed.toml"),
                    "--output", str(out), *ARGS, "prune.stages.0.repeat=1", *extra])

    foreign = tmp_path / "a.trainer"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert prune(tmp_path / "a") == 2
    assert "not a prune work folder" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine" and not (tmp_path / "a").exists()

    assert prune(tmp_path / "b") == 0
    capsys.readouterr()
    assert prune(tmp_path / "b", "prune.stages.1.recover_steps=1") == 2
    err = capsys.readouterr().err
    assert "another prune" in err and "config.prune.stages" in err and "--overwrite" in err
    assert prune(tmp_path / "b", "prune.stages.1.recover_steps=1", "--overwrite") == 0
    req = json.loads((tmp_path / "b.trainer" / "prune.json").read_text())
    assert req["config"]["prune"]["stages"][1]["recover_steps"] == 1


def test_a_second_writer_of_one_output_is_refused(tmp_path, tiny_dir, capsys):
    """A lock held by a live process (here: this one's parent, faked by the lock's pid) refuses
    a prune and an export to the same directory before any work."""
    from summprune.__main__ import main as cli

    (tmp_path / ".o.lock").write_text(f"{os.getppid()}\n")
    rc = cli(["prune", "--model", str(tiny_dir), "--config", str(ROOT / "configs" / "seed.toml"),
              "--output", str(tmp_path / "o"), "--no-train"])
    assert rc == 2 and "being written by process" in capsys.readouterr().err
    rc = cli(["export", "--model", str(tiny_dir), "--output", str(tmp_path / "o")])
    assert rc == 2 and "being written by process" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---- issue 32: a work folder resumes only the model and the steps it holds ----------------------

def _prune(tiny_dir, out, *extra):
    from summprune.__main__ import main as cli

    return cli(["prune", "--model", str(tiny_dir), "--config", str(ROOT / "configs" / "seed.toml"),
                "--output", str(out), *ARGS, "prune.stages.0.repeat=1", *extra])


def _other_model(d):
    """Another model (other weights, same shape and tokenizer) saved over ``d``."""
    from summprune.modeling import build_tiny_model

    build_tiny_model(vocab_size=100, d_model=32, layers=2, heads=4, d_ff=64, seed=7).save_pretrained(d)


def test_a_resume_with_another_model_at_the_same_path_is_refused(tmp_path, tiny_dir, capsys):
    """prune.json records the model's content, not only its path: a model replaced at --model
    (here after a finished prune, whose last step a rerun would resume after) is refused, naming
    the files that changed; --overwrite starts again on the new one."""
    assert _prune(tiny_dir, tmp_path / "a") == 0
    req = json.loads((tmp_path / "a.trainer" / "prune.json").read_text())
    assert set(req["model_sha256"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
    capsys.readouterr()
    _other_model(tiny_dir)
    assert _prune(tiny_dir, tmp_path / "a") == 2
    err = capsys.readouterr().err
    assert "model_sha256.model.safetensors" in err and "not the one this work started from" in err
    assert "--overwrite" in err
    assert _prune(tiny_dir, tmp_path / "a", "--overwrite") == 0
    assert "resuming" not in capsys.readouterr().out


def test_a_foreign_step_copied_into_the_work_folder_is_refused(tmp_path, tiny_dir, capsys):
    """A step checkpoint is tied to its work folder's request: one copied from a prune of another
    model (or another recipe) is refused naming what differs, not resumed silently."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_dir, other)
    _other_model(other)
    assert _prune(tiny_dir, tmp_path / "a") == 0
    assert _prune(other, tmp_path / "b") == 0
    assert _prune(tiny_dir, tmp_path / "c", "prune.stages.1.recover_steps=1") == 0
    capsys.readouterr()
    latest = tmp_path / "a.trainer" / "steps" / "latest"
    for src, differs in (("b", "model_sha256.model.safetensors"), ("c", "config.prune.stages")):
        shutil.rmtree(latest)
        shutil.copytree(tmp_path / f"{src}.trainer" / "steps" / "latest", latest)
        assert _prune(tiny_dir, tmp_path / "a") == 2
        err = capsys.readouterr().err
        assert "step checkpoint of another prune" in err and differs in err and "--overwrite" in err, err


def test_an_old_work_folder_without_fingerprints_still_resumes(tmp_path, tiny_dir, capsys):
    """Issue 34: a work folder written before prune.json and step.json recorded fingerprints
    resumes (with a note); prune.json gets the model's fingerprint then."""
    assert _prune(tiny_dir, tmp_path / "a") == 0
    work = tmp_path / "a.trainer"
    req = json.loads((work / "prune.json").read_text())
    fp = req.pop("model_sha256")
    (work / "prune.json").write_text(json.dumps(req))
    step = json.loads((work / "steps" / "latest" / "step.json").read_text())
    del step["owner"], step["state_sha256"]
    (work / "steps" / "latest" / "step.json").write_text(json.dumps(step))
    capsys.readouterr()
    assert _prune(tiny_dir, tmp_path / "a") == 0
    out = capsys.readouterr().out
    assert "resuming after step 2" in out
    assert "before it recorded the model's fingerprint" in out and "written before step checkpoints recorded" in out
    assert json.loads((work / "prune.json").read_text())["model_sha256"] == fp


@pytest.fixture
def finished(tmp_path, tiny_dir):
    """A finished prune's work folder (its last step checkpoint kept: a rerun resumes after it)."""
    assert _prune(tiny_dir, tmp_path / "a") == 0
    return tmp_path / "a.trainer" / "steps" / "latest"


def _step(latest, **changes):
    info = json.loads((latest / "step.json").read_text())
    for k, v in changes.items():
        if k == "model_type":
            info["config"]["model_type"] = v
        else:
            info[k] = v
    (latest / "step.json").write_text(json.dumps(info))


@pytest.mark.parametrize("case", ["truncated step.json", "truncated state", "symlinked state", "method 99",
                                  "lying model_type", "legacy truncated state"])
def test_a_broken_step_checkpoint_is_a_clear_error_suggesting_overwrite(tmp_path, tiny_dir, finished, case, capsys):
    """Each way a step checkpoint can be broken fails the rerun with exit 2 and a message naming the
    file and --overwrite (not a raw SafetensorError/IndexError/RuntimeError, not a followed link);
    --overwrite then starts again."""
    import shutil

    state = finished / "state.safetensors"
    if case == "truncated step.json":
        text = (finished / "step.json").read_text()
        (finished / "step.json").write_text(text[: len(text) // 2])
    elif case in ("truncated state", "legacy truncated state"):
        if case.startswith("legacy"):
            info = json.loads((finished / "step.json").read_text())
            del info["state_sha256"]
            (finished / "step.json").write_text(json.dumps(info))
        data = state.read_bytes()
        state.write_bytes(data[: len(data) // 2])
    elif case == "symlinked state":
        outside = tmp_path / "elsewhere.safetensors"
        shutil.move(state, outside)
        state.symlink_to(outside)
    elif case == "method 99":
        _step(finished, method=99)
    else:
        _step(finished, model_type="bart")
    capsys.readouterr()
    assert _prune(tiny_dir, tmp_path / "a") == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and str(finished) in err, err
    assert _prune(tiny_dir, tmp_path / "a", "--overwrite") == 0

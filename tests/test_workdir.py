"""Issue 34, "the driver only drives": run folders and prune work folders are one abstraction with
one compare-and-refuse (summprune.workdir), `run` and `prune` one path through the driver
(summprune.pipeline._drive), and the finished CSV's record is a seal checked by io.files.check_seal."""

from __future__ import annotations

import ast
import json

import pytest

from conftest import ROOT


def _run_cfg(tmp_path, *extra):
    from summprune.config import load_config

    return load_config(None, ["model.name=tiny", f"runs_dir={tmp_path / 'runs'}", "name=r",
                              f"output_dir={tmp_path / 'runs' / 'r' / 'model'}", *extra])


def _folders(tmp_path, kind, *extra):
    """A folder of ``kind`` for a config, and one for the same config with ``extra`` changed."""
    from summprune.workdir import PruneWork, RunFolder, prune_request

    if kind == "run":
        return (RunFolder(tmp_path / "runs" / "r", _run_cfg(tmp_path)),
                RunFolder(tmp_path / "runs" / "r", _run_cfg(tmp_path, *extra)))
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    return (PruneWork(tmp_path / "out", prune_request(model, _run_cfg(tmp_path), train=False)),
            PruneWork(tmp_path / "out", prune_request(model, _run_cfg(tmp_path, *extra), train=False)))


@pytest.mark.parametrize("kind", ["run", "prune"])
def test_both_kinds_of_work_folder_share_one_compare_and_refuse(tmp_path, kind):
    """Absent: a new start. Started: the same request continues, another is refused naming the
    key that differs (untouched), --overwrite starts again, emptied but for what the kind keeps."""
    folder, other = _folders(tmp_path, kind, "train.learning_rate=0.5")
    assert folder.matches(overwrite=False) is False
    folder.start(resuming=False)
    assert json.loads((folder.path / folder.record).read_text()) == folder.request
    assert folder.metrics.read_text() == ""
    assert folder.matches(overwrite=False) is True
    folder.log({"event": "initial", "kaggle_score": 0.5})
    folder.log({"event": "initial", "kaggle_score": 0.25})
    with folder.metrics.open("a") as f:
        f.write('{"event": "ini')  # a torn last line
    assert folder.logged("initial") == {"event": "initial", "kaggle_score": 0.25}
    folder.steps.mkdir()
    (folder.path / "finetuned").mkdir() if kind == "run" else None

    with pytest.raises(ValueError, match=r"differs in: .*train\.learning_rate.*--overwrite"):
        other.matches(overwrite=False)
    assert folder.steps.is_dir() and folder.logged("initial") is not None
    assert other.matches(overwrite=True) is False
    other.start(resuming=False)
    assert json.loads((other.path / other.record).read_text()) == other.request
    assert not other.steps.exists() and other.logged("initial") is None
    assert (other.path / "finetuned").is_dir() is (kind == "run")  # --overwrite keeps a run's fine-tuned model


@pytest.mark.parametrize("kind", ["run", "prune"])
def test_a_folder_that_is_not_a_work_folder_is_never_adopted_nor_emptied(tmp_path, kind):
    folder, _ = _folders(tmp_path, kind)
    folder.path.parent.mkdir(parents=True, exist_ok=True)
    folder.path.write_text("mine")
    with pytest.raises(FileExistsError, match="not a directory"):
        folder.matches(overwrite=True)
    folder.path.unlink()
    folder.path.mkdir()
    (folder.path / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=f"not {folder.what}"):
            folder.matches(overwrite=overwrite)
    assert (folder.path / "notes.txt").read_text() == "mine"


def test_a_start_killed_after_its_record_is_continued_and_a_held_lock_inside_is_kept(tmp_path):
    """The record is written first: a start killed right after it leaves a folder the same command
    continues (not 'not a run folder'). The lock of an output inside the run folder is not the
    folder's own: never counted, never removed."""
    from summprune.workdir import RunFolder

    cfg = _run_cfg(tmp_path)
    folder = RunFolder(tmp_path / "runs" / "r", cfg)
    folder.path.mkdir(parents=True)
    lock = folder.path / ".model.lock"  # output_dir = runs/r/model
    lock.write_text("123\n")
    assert folder.matches(overwrite=False) is False  # only the output's lock in it: a new start
    folder.start(resuming=False)
    folder.metrics.unlink()  # as if killed between the record and the metrics
    assert RunFolder(folder.path, cfg).matches(overwrite=False) is True
    assert RunFolder(folder.path, cfg).matches(overwrite=True) is False
    RunFolder(folder.path, cfg).start(resuming=False)
    assert lock.read_text() == "123\n"


def test_run_and_prune_are_one_path_through_the_driver():
    """pipeline.py stays under 400 lines; each step of the sequence (load the data, check the
    model, prune, export) is called once, in _drive, and both entry points call _drive."""
    src = (ROOT / "summprune" / "pipeline.py").read_text()
    assert len(src.splitlines()) < 400
    tree = ast.parse(src)
    funcs = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}

    def calls(node) -> list[str]:
        return [c.func.id for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)]

    everywhere = calls(tree)
    for step in ("load_train_val", "check_model", "prune_model", "export", "pruning_info"):
        assert everywhere.count(step) == 1 and step in calls(funcs["_drive"]), step
    assert "_drive" in calls(funcs["run"]) and "_drive" in calls(funcs["prune_existing"])


def test_a_finished_csv_record_is_a_seal_and_an_older_record_still_counts(tmp_path):
    """The finished CSV's record is checked by io.files.check_seal (one check for caches and
    CSVs); a record written before (its digest under csv_sha256 only) still says 'finished', so a
    CSV that took hours is not generated again; a changed CSV is."""
    from summprune import csvout

    out = tmp_path / "sub.csv"
    meta = {"version": csvout.META_VERSION, "docs": 2, "limit": None}
    csvout.finish(out, {0: "a", 1: "b"}, meta)
    record = csvout.sidecars(out).record
    assert csvout.finished_state(out, meta) is None
    assert "made with other arguments: docs" in csvout.finished_state(out, {**meta, "docs": 3})
    old = json.loads(record.read_text())
    assert set(old["sha256"]) == {"sub.csv"} and old["csv_sha256"] == old["sha256"]["sub.csv"]
    del old["sha256"]
    record.write_text(json.dumps(old))  # as an older version wrote it
    assert csvout.finished_state(out, meta) is None
    out.write_text(out.read_text().replace('"b"', '"c"'))
    assert "changed since it was written" in csvout.finished_state(out, meta)
    record.unlink()
    assert "no record of the arguments" in csvout.finished_state(out, meta)

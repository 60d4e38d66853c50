"""generate_csv.py in-process: course CSV format, --limit, resume after Ctrl-C, bad inputs."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from summprune import generate as gen

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("generate_csv", ROOT / "generate_csv.py")
generate_csv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate_csv)

N_DOCS = 7


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # The default --model is ./pruned_model and --output ./submission.csv: never touch the repo's.
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny T5 + a tokenizer trained on the synthetic corpus, saved like an hf export."""
    from summprune.modeling import build_tiny_model
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    rows = make_corpus(30, seed=5)
    tok = train_tokenizer([r["text"] for r in rows] + [r["summary"] for r in rows], vocab_size=300)
    model = build_tiny_model(vocab_size=len(tok), d_model=32, layers=2, heads=4, d_ff=64, seed=0)
    # let the encoder steer the output, so documents get different summaries (a random model of
    # another seed may write the same tokens for every document: check when the tokenizer changes)
    with torch.no_grad():
        model.shared.weight.mul_(0.03)
    d = tmp_path_factory.mktemp("model") / "tiny_model"
    model.save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


@pytest.fixture
def data(tmp_path) -> Path:
    from summprune.synthetic import make_corpus

    rows = make_corpus(N_DOCS, seed=6)
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps({"text": r["text"][: 150 + 120 * i]}) + "\n" for i, r in enumerate(rows)),
                    encoding="utf-8")
    return path


def run(model_dir, data, out, *extra) -> int:
    return generate_csv.main(["--model", str(model_dir), "--data", str(data), "--output", str(out),
                              "--max-length", "12", "--batch-size", "3", "--device", "cpu",
                              "--no-progress", *extra])


def read_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


@pytest.fixture
def counted(monkeypatch):
    """Record the IDs each generate_summaries call generates; optionally Ctrl-C after N batches,
    or alter the summaries (to see the CSV cleaning)."""
    real = gen.generate_summaries
    state = {"calls": [], "interrupt_after": None, "suffix": "", "real": real}

    def wrapper(*args, on_batch=None, **kw):
        ids_this_call: list[int] = []
        state["calls"].append(ids_this_call)
        state["kwargs"] = kw

        def hook(ids, summaries):
            ids_this_call.extend(ids)
            on_batch(ids, [s + state["suffix"] for s in summaries])
            n = state["interrupt_after"]
            if n is not None and len(ids_this_call) >= n:
                raise KeyboardInterrupt

        return real(*args, on_batch=hook, **kw)

    monkeypatch.setattr(gen, "generate_summaries", wrapper)
    return state


def test_csv_course_format(model_dir, data, tmp_path, counted):
    from summprune.modeling import load_tokenizer

    counted["suffix"] = ", then\nmore\r\nlines é"
    out = tmp_path / "sub.csv"
    assert run(model_dir, data, out) == 0
    raw = out.read_bytes().decode("utf-8")  # UTF-8 (the é survives)
    lines = raw.split("\n")
    assert lines[0] == '"ID","Predict"' and lines[-1] == ""
    assert len(lines) == N_DOCS + 2
    for i, line in enumerate(lines[1:-1]):
        assert line.startswith(f'"{i}","') and line.endswith('"'), line  # QUOTE_ALL, ID order
    rows = read_rows(out)
    assert rows[0] == ["ID", "Predict"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(N_DOCS)]
    assert len({r[1] for r in rows[1:]}) > 1  # documents get different summaries

    texts = [json.loads(x)["text"] for x in data.read_text(encoding="utf-8").splitlines()]
    tok = load_tokenizer(model_dir)
    from summprune.export import load_model

    expected = counted["real"](load_model(model_dir), tok, texts, max_length=12, progress=False)
    for (i, pred), row in zip(expected.items(), rows[1:]):
        assert row[1] == gen.clean_prediction(pred + ", then\nmore\r\nlines é")
        assert row[1].endswith(". then more lines é") and "," not in row[1] and "\n" not in row[1]
    # no partial rows, no temp: only the record of the arguments the CSV was made with
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv", "sub.csv.meta.json", "test.jsonl"]


def test_compact_format_gives_the_same_csv(model_dir, data, tmp_path):
    from summprune.export import load_model, save_compact
    from summprune.modeling import load_tokenizer

    compact = save_compact(load_model(model_dir), tmp_path / "compact_model", tokenizer=load_tokenizer(model_dir))
    assert (compact / "compact.json").is_file()
    assert run(model_dir, data, tmp_path / "hf.csv") == 0
    assert run(compact, data, tmp_path / "compact.csv") == 0
    assert (tmp_path / "hf.csv").read_bytes() == (tmp_path / "compact.csv").read_bytes()


def test_limit(model_dir, data, tmp_path):
    out = tmp_path / "sub.csv"
    assert run(model_dir, data, out, "--limit", "3") == 0
    assert [r[0] for r in read_rows(out)] == ["ID", "0", "1", "2"]
    assert run(model_dir, data, out, "--limit", "100") == 0
    assert len(read_rows(out)) == N_DOCS + 1


def test_a_rerun_of_a_finished_csv_says_so_and_regenerates_only_when_it_must(model_dir, data, tmp_path, counted,
                                                                          capsys):
    out = tmp_path / "sub.csv"
    assert run(model_dir, data, out) == 0
    assert len(counted["calls"]) == 1
    first = out.read_bytes()
    capsys.readouterr()
    # the same command: nothing generated, nothing rewritten, exit 0, and it says why
    mtime = out.stat().st_mtime_ns
    assert run(model_dir, data, out) == 0
    assert len(counted["calls"]) == 1 and out.stat().st_mtime_ns == mtime
    err = capsys.readouterr().err
    assert f"{out} is complete: its {N_DOCS} summaries were made by this same command" in err
    assert "--overwrite generates it again" in err
    # --overwrite generates it again (the same rows: torch greedy fp32 is deterministic)
    assert run(model_dir, data, out, "--overwrite") == 0
    assert len(counted["calls"]) == 2 and out.read_bytes() == first
    assert "exists (--overwrite): generating it again" in capsys.readouterr().err
    # other arguments: generated again, saying which changed
    assert run(model_dir, data, out, "--limit", "2") == 0
    assert len(counted["calls"]) == 3 and len(read_rows(out)) == 3
    assert "made with other arguments: docs, limit" in capsys.readouterr().err
    # a CSV changed since it was written, or one without a record: generated again
    out.write_text(out.read_text(encoding="utf-8").replace('"1"', '"9"'), encoding="utf-8")
    assert run(model_dir, data, out, "--limit", "2") == 0
    assert len(counted["calls"]) == 4 and "changed since it was written" in capsys.readouterr().err
    (tmp_path / "sub.csv.meta.json").unlink()
    assert run(model_dir, data, out, "--limit", "2") == 0
    assert len(counted["calls"]) == 5 and "no record of the arguments" in capsys.readouterr().err
    assert json.loads((tmp_path / "sub.csv.meta.json").read_text())["limit"] == 2


def test_help_shows_each_default_once():
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert generate_csv.main(["--help"]) == 0
    text = " ".join(buf.getvalue().split())
    assert "(default: None)" not in text
    assert "else 'summarize: ')" in text and "(default: submission.csv)" in text


def test_interrupt_then_resume_gives_the_uninterrupted_csv(model_dir, data, tmp_path, counted, capsys):
    out = tmp_path / "sub.csv"
    partial = tmp_path / "sub.csv.partial.jsonl"
    meta = tmp_path / "sub.csv.partial.meta.json"
    counted["interrupt_after"] = 3  # Ctrl-C after the first batch of 3
    assert run(model_dir, data, out) == 130
    assert "re-run the same command to resume" in capsys.readouterr().err
    assert not out.exists() and partial.is_file() and meta.is_file()
    first = counted["calls"][-1]
    assert len(first) == 3 and len(partial.read_text(encoding="utf-8").splitlines()) == 3

    counted["interrupt_after"] = None
    assert run(model_dir, data, out) == 0
    assert f"resuming: 3 of {N_DOCS} done" in capsys.readouterr().err
    second = counted["calls"][-1]
    assert sorted(first + second) == list(range(N_DOCS))  # only the remaining IDs generated
    assert not partial.exists() and not meta.exists()

    fresh = tmp_path / "fresh.csv"
    assert run(model_dir, data, fresh) == 0
    assert out.read_bytes() == fresh.read_bytes()


def test_resume_survives_a_torn_last_line(model_dir, data, tmp_path, counted, capsys):
    out = tmp_path / "sub.csv"
    counted["interrupt_after"] = 3
    assert run(model_dir, data, out) == 130
    with (tmp_path / "sub.csv.partial.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"id": 5, "predic')  # killed mid-write
    counted["interrupt_after"] = None
    assert run(model_dir, data, out) == 0
    assert f"resuming: 3 of {N_DOCS} done" in capsys.readouterr().err
    assert len(counted["calls"][-1]) == N_DOCS - 3
    assert [r[0] for r in read_rows(out)[1:]] == [str(i) for i in range(N_DOCS)]


def test_changed_arguments_start_over(model_dir, data, tmp_path, counted, capsys):
    out = tmp_path / "sub.csv"
    counted["interrupt_after"] = 3
    assert run(model_dir, data, out) == 130
    counted["interrupt_after"] = None
    assert run(model_dir, data, out, "--limit", str(N_DOCS - 1)) == 0
    err = capsys.readouterr().err
    assert "different arguments (docs, limit); starting over" in err
    assert sorted(counted["calls"][-1]) == list(range(N_DOCS - 1))


def test_changed_decoding_is_refused_not_mixed(model_dir, data, tmp_path, counted, capsys):
    """A resume never mixes two decodings, and never throws finished rows away unasked."""
    out = tmp_path / "sub.csv"
    counted["interrupt_after"] = 3
    assert run(model_dir, data, out) == 130
    counted["interrupt_after"] = None
    partial = (tmp_path / "sub.csv.partial.jsonl").read_text()
    for extra, needle in ((["--num-beams", "2"], "num_beams 1 (now 2)"),
                          (["--no-repeat-ngram-size", "3"], "no_repeat_ngram_size 0 (now 3)")):
        assert run(model_dir, data, out, *extra) == 2
        err = capsys.readouterr().err
        assert "interrupted run made with another decoding" in err and needle in err and "--restart" in err
        assert (tmp_path / "sub.csv.partial.jsonl").read_text() == partial and not out.exists()
    assert run(model_dir, data, out, "--num-beams", "2", "--restart") == 0
    assert sorted(counted["calls"][-1]) == list(range(N_DOCS))
    assert [r[0] for r in read_rows(out)[1:]] == [str(i) for i in range(N_DOCS)]


def _fails(capsys, tmp_path, argv, *needles) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    assert generate_csv.main(argv) == 2
    err = capsys.readouterr().err
    assert "generate_csv.py: error:" in err
    for needle in needles:
        assert needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_missing_model_dir(capsys, tmp_path, data):
    _fails(capsys, tmp_path, ["--model", str(tmp_path / "nope"), "--data", str(data)],
           str(tmp_path / "nope"), "python -m summprune run")
    _fails(capsys, tmp_path, ["--data", str(data)], "pruned_model", "not found")  # the default


def test_model_dir_without_weights(capsys, tmp_path, data):
    d = tmp_path / "half_model"
    d.mkdir()
    (d / "config.json").write_text("{}", encoding="utf-8")
    _fails(capsys, tmp_path, ["--model", str(d), "--data", str(data)],
           "model.safetensors or compact.json", str(d))


def test_data_without_text(capsys, tmp_path, model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "no text column here"}\n', encoding="utf-8")
    _fails(capsys, tmp_path, ["--model", str(model_dir), "--data", str(bad)], str(bad), "text")
    _fails(capsys, tmp_path, ["--model", str(model_dir), "--data", str(tmp_path / "missing.jsonl")],
           "missing.jsonl")


def test_bad_options(capsys, tmp_path, model_dir, data):
    base = ["--model", str(model_dir), "--data", str(data)]
    _fails(capsys, tmp_path, base + ["--max-length", "0"], "--max-length")
    _fails(capsys, tmp_path, base + ["--device", "tpu"], "--device", "tpu")
    _fails(capsys, tmp_path, base + ["--dtype", "fp8"], "--dtype")
    _fails(capsys, tmp_path, base + ["--dtype", "fp16", "--device", "cpu"], "fp16")
    _fails(capsys, tmp_path, base + ["--limit", "0"], "--limit")
    _fails(capsys, tmp_path, base + ["--threads", "0"], "--threads")
    _fails(capsys, tmp_path, base + ["--output", str(tmp_path / "no_dir" / "x.csv")], "no_dir")


DECODING_KEYS = ("max_length", "num_beams", "no_repeat_ngram_size", "repetition_penalty", "length_penalty",
                 "min_new_tokens")


def test_decoding_options_reach_generate_and_the_meta(model_dir, data, tmp_path, counted, capsys):
    out = tmp_path / "sub.csv"
    counted["interrupt_after"] = 3
    opts = ["--num-beams", "3", "--no-repeat-ngram-size", "2", "--repetition-penalty", "1.3",
            "--length-penalty", "1.5", "--min-new-tokens", "4", "--engine", "torch"]  # compared with torch below
    assert run(model_dir, data, out, *opts) == 130
    want = {"max_length": 12, "num_beams": 3, "no_repeat_ngram_size": 2, "repetition_penalty": 1.3,
            "length_penalty": 1.5, "min_new_tokens": 4}
    assert {k: counted["kwargs"][k] for k in DECODING_KEYS} == want
    meta = json.loads((tmp_path / "sub.csv.partial.meta.json").read_text())
    assert meta["decoding"] == want
    counted["interrupt_after"] = None
    assert run(model_dir, data, out, *opts) == 0  # same decoding: resumes
    assert f"resuming: 3 of {N_DOCS} done" in capsys.readouterr().err
    # the summaries are those of generate_summaries with these options (and differ from greedy)
    from summprune.export import load_model
    from summprune.modeling import load_tokenizer

    texts = [json.loads(x)["text"] for x in data.read_text(encoding="utf-8").splitlines()]
    expected = counted["real"](load_model(model_dir), load_tokenizer(model_dir), texts, progress=False, **want)
    assert [r[1] for r in read_rows(out)[1:]] == [gen.clean_prediction(expected[i]) for i in range(N_DOCS)]


def test_decoding_defaults_come_from_generation_config(model_dir, data, tmp_path, counted, capsys):
    import shutil

    d = tmp_path / "shipped"
    shutil.copytree(model_dir, d)
    cfg = json.loads((d / "generation_config.json").read_text())
    cfg.update(num_beams=2, no_repeat_ngram_size=3, max_new_tokens=9)  # max_new_tokens 9 = max_length 10
    (d / "generation_config.json").write_text(json.dumps(cfg))
    assert generate_csv.main(["--model", str(d), "--data", str(data), "--output", str(tmp_path / "a.csv"),
                              "--device", "cpu", "--no-progress"]) == 0
    got = {k: counted["kwargs"][k] for k in DECODING_KEYS}
    assert got == {"max_length": 10, "num_beams": 2, "no_repeat_ngram_size": 3, "repetition_penalty": 1.0,
                   "length_penalty": 1.0, "min_new_tokens": 0}
    assert "num_beams=2 (model)" in capsys.readouterr().err
    # an option overrides the file; without the file the course's greedy max_length=128 applies
    assert run(d, data, tmp_path / "b.csv", "--num-beams", "1") == 0
    assert counted["kwargs"]["num_beams"] == 1 and counted["kwargs"]["no_repeat_ngram_size"] == 3
    (d / "generation_config.json").unlink()
    assert generate_csv.main(["--model", str(d), "--data", str(data), "--output", str(tmp_path / "c.csv"),
                              "--device", "cpu", "--no-progress", "--limit", "1"]) == 0
    assert counted["kwargs"]["max_length"] == 128 and counted["kwargs"]["num_beams"] == 1


def test_bad_decoding_options(capsys, tmp_path, model_dir, data):
    import shutil

    base = ["--model", str(model_dir), "--data", str(data)]
    _fails(capsys, tmp_path, base + ["--num-beams", "0"], "num_beams=0", "--num-beams")
    _fails(capsys, tmp_path, base + ["--no-repeat-ngram-size", "-1"], "no_repeat_ngram_size")
    _fails(capsys, tmp_path, base + ["--repetition-penalty", "0"], "repetition_penalty", "--repetition-penalty")
    _fails(capsys, tmp_path, base + ["--repetition-penalty", "nan"], "finite")
    _fails(capsys, tmp_path, base + ["--length-penalty", "2"], "beam search only")
    _fails(capsys, tmp_path, base + ["--max-length", "5", "--min-new-tokens", "5"], "min_new_tokens")
    d = tmp_path / "bad_gen"
    shutil.copytree(model_dir, d)
    (d / "generation_config.json").write_text(json.dumps({"num_beams": -2}))
    _fails(capsys, tmp_path, ["--model", str(d), "--data", str(data)], "num_beams=-2",
           str(d / "generation_config.json"), "--num-beams")


def test_csv_gets_a_normal_files_mode(model_dir, data, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        assert run(model_dir, data, tmp_path / "sub.csv", "--limit", "2") == 0
    finally:
        os.umask(old)
    assert oct((tmp_path / "sub.csv").stat().st_mode & 0o777) == "0o644"  # not mkstemp's 0600


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(model_dir, data, tmp_path, capsys):
    import subprocess
    import sys

    out = tmp_path / "sub.csv"
    lock = tmp_path / "sub.csv.lock"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{live.pid}\n")
        assert run(model_dir, data, out) == 2
        err = capsys.readouterr().err
        assert f"being written by process {live.pid}" in err and not out.exists()
    finally:
        live.kill()
        live.wait()
    lock.write_text(f"{live.pid}\n")  # its process is gone now: a stale lock from a killed run
    assert run(model_dir, data, out) == 0 and out.is_file() and not lock.exists()


def test_prefix_and_input_length_come_from_how_the_model_was_trained(model_dir, data, tmp_path, counted, capsys):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    (d / "pruning.json").write_text(json.dumps({"data": {"prefix": "sum: ", "max_source_length": 40}}))
    assert run(d, data, tmp_path / "a.csv") == 0
    assert (counted["kwargs"]["prefix"], counted["kwargs"]["max_source_length"]) == ("sum: ", 40)
    assert "prefix='sum: ' (pruning.json)" in capsys.readouterr().err
    assert run(d, data, tmp_path / "b.csv", "--prefix", "summarize: ", "--max-source-length", "64") == 0
    assert (counted["kwargs"]["prefix"], counted["kwargs"]["max_source_length"]) == ("summarize: ", 64)
    assert run(model_dir, data, tmp_path / "c.csv") == 0  # nothing recorded: the package defaults
    assert (counted["kwargs"]["prefix"], counted["kwargs"]["max_source_length"]) == ("summarize: ", 1024)


def test_unwritable_output_and_a_broken_config_are_messages(model_dir, data, tmp_path, capsys, monkeypatch):
    import shutil

    from summprune.io import files

    def denied(path, data, encoding="utf-8"):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(files, "atomic_write", denied)
    assert run(model_dir, data, tmp_path / "sub.csv") == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "Permission denied" in err and "Traceback" not in err
    monkeypatch.undo()
    bad = tmp_path / "bad_model"
    shutil.copytree(model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["d_kv"] = -1
    (bad / "config.json").write_text(json.dumps(cfg))
    assert run(bad, data, tmp_path / "b.csv") == 2
    err = capsys.readouterr().err
    assert "cannot load the model" in err and str(bad) in err and "Traceback" not in err


def test_resume_with_the_output_inside_the_model_dir(data, tmp_path, model_dir, counted, capsys):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    out = d / "preds.csv"  # its lock and sidecars sit in the model directory
    counted["interrupt_after"] = 3
    assert run(d, data, out) == 130
    counted["interrupt_after"] = None
    assert run(d, data, out) == 0
    assert f"resuming: 3 of {N_DOCS} done" in capsys.readouterr().err


# ---- issue 22 (fuzz): data loss, silent wrong output, tracebacks --------------------------------

def _model_copy(model_dir, tmp_path) -> Path:
    import shutil

    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    return d


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file()}


def test_output_that_is_the_data_or_a_model_file_is_refused(model_dir, data, tmp_path, capsys, monkeypatch):
    d = _model_copy(model_dir, tmp_path)
    model_files = _snapshot(d)
    bills = data.read_bytes()
    (tmp_path / "link.csv").symlink_to(data)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    base = ["--model", str(d), "--data", str(data), "--device", "cpu", "--no-progress"]
    for out in (str(data), "../test.jsonl", str(tmp_path / "link.csv")):
        _fails(capsys, tmp_path, base + ["--output", out], f"--output {out}", "--data", str(data))
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        _fails(capsys, tmp_path, base + ["--output", str(d / name)], f"--output {d / name}",
               "model directory", str(d))
    assert data.read_bytes() == bills and _snapshot(d) == model_files


def test_ragged_csv_data_is_refused_not_shifted(model_dir, tmp_path, capsys):
    bad = tmp_path / "bills.csv"
    # one unquoted comma too many on the first row: pandas made the first field an index column
    bad.write_text("text\nA bill, with a comma\n", encoding="utf-8")  # pandas read text=" with a comma"
    _fails(capsys, tmp_path, ["--model", str(model_dir), "--data", str(bad), "--device", "cpu"],
           str(bad), "line 2", "2 fields", "header")


def test_prefix_that_fills_the_input_is_refused(model_dir, data, tmp_path, capsys, counted):
    base = ["--model", str(model_dir), "--data", str(data), "--device", "cpu", "--no-progress"]
    long_prefix = "summarize this bill please: " * 3
    _fails(capsys, tmp_path, base + ["--prefix", long_prefix, "--max-source-length", "8"],
           "--prefix", "--max-source-length 8", "no room for the document")
    d = _model_copy(model_dir, tmp_path)
    (d / "pruning.json").write_text(json.dumps({"data": {"prefix": long_prefix, "max_source_length": 8}}))
    _fails(capsys, tmp_path, ["--model", str(d)] + base[2:], "pruning.json", "max_source_length 8")
    assert counted["calls"] == []


def test_read_only_output_folder_is_a_message(model_dir, data, tmp_path, capsys, monkeypatch):
    import os

    real = os.access
    # we run as root, where chmod does not stop writes: the folder's own check is what is tested
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == tmp_path and mode & os.W_OK
                        else real(p, mode, **kw))
    _fails(capsys, tmp_path, ["--model", str(model_dir), "--data", str(data), "--output", str(tmp_path / "s.csv"),
                              "--device", "cpu"], "--output", str(tmp_path), "not writable")


def test_a_lock_that_cannot_be_written_is_a_message(model_dir, data, tmp_path, capsys, monkeypatch):
    import errno

    real = Path.write_text

    def full(self, *a, **kw):
        if self.name.startswith(".s.csv.lock."):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", full)
    _fails(capsys, tmp_path, ["--model", str(model_dir), "--data", str(data), "--output", str(tmp_path / "s.csv"),
                              "--device", "cpu"], "--output", "s.csv.lock", "No space left on device")


def _fsync_fails_for(monkeypatch, pred):
    """os.fsync raises ENOSPC for the files whose name ``pred`` accepts (a disk that fills up)."""
    import errno
    import os

    real = os.fsync

    def fsync(fd):
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if pred(name):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_disk_full_while_saving_progress_is_a_message(model_dir, data, tmp_path, capsys, monkeypatch):
    _fsync_fails_for(monkeypatch, lambda name: name == "s.csv.partial.jsonl")
    assert run(model_dir, data, tmp_path / "s.csv") == 2
    err = capsys.readouterr().err
    assert "generate_csv.py: error:" in err and "No space left on device" in err
    assert str(tmp_path / "s.csv.partial.jsonl") in err
    assert not (tmp_path / "s.csv").exists() and not list(tmp_path.glob(".*tmp")) and not list(tmp_path.glob("*.lock"))


def test_disk_full_while_writing_the_csv_leaves_no_half_file(model_dir, data, tmp_path, capsys, monkeypatch):
    _fsync_fails_for(monkeypatch, lambda name: name.startswith(".s.csv.") and name.endswith(".tmp")
                     and ".partial" not in name)
    assert run(model_dir, data, tmp_path / "s.csv") == 2
    err = capsys.readouterr().err
    assert "--output" in err and str(tmp_path / "s.csv") in err and "No space left on device" in err
    assert not (tmp_path / "s.csv").exists() and not list(tmp_path.glob(".*tmp"))
    assert (tmp_path / "s.csv.partial.jsonl").is_file()  # the summaries are kept for the re-run


def test_truncated_tokenizer_json_names_the_file(model_dir, data, tmp_path, capsys):
    d = _model_copy(model_dir, tmp_path)
    tok = d / "tokenizer.json"
    tok.write_bytes(tok.read_bytes()[:100])
    _fails(capsys, tmp_path, ["--model", str(d), "--data", str(data), "--output", str(tmp_path / "s.csv"),
                              "--device", "cpu", "--no-progress"], str(tok), "truncated or corrupt")


def test_auto_engine_is_ctranslate2_for_beams_on_a_cpu_and_torch_for_greedy(model_dir, data, tmp_path, capsys):
    pytest.importorskip("ctranslate2")
    assert gen.choose_engine("auto", "cpu", 1, "fp32")[0] == "torch"  # greedy: the exact reference
    assert gen.choose_engine("auto", "cpu", 4, "fp32")[0] == "ctranslate2"
    assert gen.choose_engine("auto", "cpu", 4, "bf16")[0] == "torch"  # CTranslate2 has no bf16 on CPU
    assert gen.choose_engine("auto", "cuda", 4, "fp32")[0] == "torch"
    assert gen.choose_engine("torch", "cpu", 4, "fp32") == ("torch", "asked for")

    assert run(model_dir, data, tmp_path / "g.csv") == 0
    assert "engine: torch (greedy decoding" in capsys.readouterr().err
    assert run(model_dir, data, tmp_path / "b.csv", "--num-beams", "3") == 0
    assert "engine: ctranslate2 (beam search on a CPU" in capsys.readouterr().err
    assert run(model_dir, data, tmp_path / "t.csv", "--num-beams", "3", "--engine", "torch") == 0
    assert "engine:" not in capsys.readouterr().err  # asked for: nothing to explain
    assert len(read_rows(tmp_path / "b.csv")) == len(read_rows(tmp_path / "t.csv")) == N_DOCS + 1


# ------------------------------------------------------------------------------------------
# bounded generation and clean errors (issue 32)


def test_beams_past_the_memory_budget_are_refused_before_loading(model_dir, data, tmp_path, capsys, monkeypatch):
    """--num-beams 1000000: torch asked for 16.4 GB, CTranslate2 4.6 GB, then raw tracebacks."""
    engines = ["torch"] + (["ctranslate2"] if gen.ENGINES["ctranslate2"].available() else [])
    for engine in engines:
        monkeypatch.setattr(gen.ENGINES[engine], "load", lambda *a, **k: pytest.fail("the model was loaded"))
        _fails(capsys, tmp_path, ["--model", str(model_dir), "--data", str(data), "--output", str(tmp_path / "s.csv"),
                                  "--device", "cpu", "--engine", engine, "--num-beams", "1000000"],
               "--num-beams 1000000", "1000000 beam(s)", "of memory, more than", "nothing was allocated")
    monkeypatch.setenv("SUMMPRUNE_MAX_MEMORY", "10kB")
    _fails(capsys, tmp_path, ["--model", str(model_dir), "--data", str(data), "--output", str(tmp_path / "s.csv"),
                              "--device", "cpu", "--engine", "torch"], "SUMMPRUNE_MAX_MEMORY=10kB")


def test_max_length_1_and_too_many_threads_are_messages(model_dir, data, tmp_path, capsys):
    argv = ["--model", str(model_dir), "--data", str(data), "--output", str(tmp_path / "s.csv"), "--device", "cpu"]
    _fails(capsys, tmp_path, [*argv, "--max-length", "1"], "max_length=1", ">= 2", "--max-length")
    _fails(capsys, tmp_path, [*argv, "--threads", "100000"], "--threads 100000", "four per CPU")


def _bart_dir(tmp_path: Path, model_dir: Path, max_positions: int = 16) -> Path:
    """A tiny BART with ``max_positions`` decoder positions, the tokenizer of ``model_dir``."""
    import shutil

    from summprune.modeling import build_tiny_model

    d = tmp_path / "bart"
    tok = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    build_tiny_model(vocab_size=tok, d_model=32, heads=4, d_ff=64, family="bart",
                     max_positions=max_positions).save_pretrained(d)
    for f in model_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, d)
    return d


def test_decoder_length_past_the_positions_is_refused_or_capped(model_dir, data, tmp_path, capsys):
    """BART with max_position_embeddings=16 and --max-length 64 --min-new-tokens 40: raw IndexError."""
    d = _bart_dir(tmp_path, model_dir)
    argv = ["--model", str(d), "--data", str(data), "--device", "cpu", "--no-progress", "--engine", "torch",
            "--max-source-length", "16"]
    _fails(capsys, tmp_path, [*argv, "--output", str(tmp_path / "s.csv"), "--max-length", "64",
                              "--min-new-tokens", "40"], "max_length=64", "16 positions", "max_position_embeddings")
    # the default max_length (128) is capped with a warning, and the summaries are written
    assert generate_csv.main([*argv, "--output", str(tmp_path / "s.csv")]) == 0
    err = capsys.readouterr().err
    assert "warning: max_length 128 (from default) capped to 16" in err
    assert len(read_rows(tmp_path / "s.csv")) == N_DOCS + 1


def test_a_tokenizer_larger_than_the_vocabulary_is_a_message(model_dir, data, tmp_path, capsys):
    """vocab_size smaller than the tokenizer: a raw IndexError in the torch engine."""
    d = _model_copy(model_dir, tmp_path)
    from summprune.modeling import build_tiny_model

    build_tiny_model(vocab_size=50, d_model=32, layers=2, heads=4, d_ff=64).save_pretrained(d)
    n = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    _fails(capsys, tmp_path, ["--model", str(d), "--data", str(data), "--output", str(tmp_path / "s.csv"),
                              "--device", "cpu", "--engine", "torch"],
           f"token ids up to {n - 1}", "vocab_size is 50")


@pytest.mark.parametrize("bad", [32128.0, True, "64"])
def test_non_integer_config_values_are_a_message(model_dir, data, tmp_path, capsys, bad):
    """vocab_size=32128.0, true, "64": clean in `report`, a raw TypeError here."""
    d = _model_copy(model_dir, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "vocab_size": bad}))
    _fails(capsys, tmp_path, ["--model", str(d), "--data", str(data), "--output", str(tmp_path / "s.csv"),
                              "--device", "cpu"], str(d / "config.json"), f"vocab_size={bad!r} is not a positive whole number")


def test_disk_full_while_writing_a_batch_keeps_the_message(model_dir, data, tmp_path, capsys, monkeypatch):
    """A write the disk refuses (not only the fsync): closing the partial file raised a raw OSError
    that hid the "cannot save progress" message. The partial file is /dev/full here: every write
    fails with ENOSPC, as on a full disk."""
    real_open = Path.open

    def open_(self, mode="r", *a, **kw):
        if self.name == "s.csv.partial.jsonl" and "a" in mode:
            return real_open(Path("/dev/full"), mode.replace("a", "w"), *a, **kw)
        return real_open(self, mode, *a, **kw)

    monkeypatch.setattr(Path, "open", open_)
    assert run(model_dir, data, tmp_path / "s.csv") == 2
    err = capsys.readouterr().err
    assert "generate_csv.py: error:" in err and "cannot save progress" in err and "No space left on device" in err
    assert f"0 of {N_DOCS} summaries are saved" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()


def test_rows_read_back_from_a_tampered_partial_file_are_cleaned(model_dir, data, tmp_path, counted):
    out = tmp_path / "sub.csv"
    partial = tmp_path / "sub.csv.partial.jsonl"
    counted["interrupt_after"] = 3
    assert run(model_dir, data, out) == 130
    rows = [json.loads(x) for x in partial.read_text(encoding="utf-8").splitlines()]
    rows[0]["prediction"] = "a, b\nc\r\nd"
    partial.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    counted["interrupt_after"] = None
    assert run(model_dir, data, out) == 0
    got = dict(read_rows(out)[1:])
    assert got[str(rows[0]["id"])] == "a. b c d"
    assert all("," not in p and "\n" not in p for p in got.values())

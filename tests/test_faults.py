"""Bad input and odd environments: a clear error naming the file, option or key, exit status 2,
and nothing half-written or lost (the fault list of the reliability issue)."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest
import torch

from conftest import ROOT
from summprune.__main__ import main as cli
from summprune.config import ConfigError, load_config

TINY = ["model.name=tiny", "model.tiny_d_model=16", "model.tiny_d_ff=32", "model.tiny_vocab=200",
        "data.dataset=synthetic", "data.synthetic_docs=24", "data.val_size=4", "data.max_source_length=32",
        "data.max_target_length=16", "train.epochs=1", "eval.docs=2"]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_an_output_that_is_a_file_fails_before_any_work(tmp_path, tiny_dir, capsys):
    blocker = tmp_path / "pruned_model"
    blocker.write_text("not a directory")
    t0 = time.time()
    rc = cli(["run", str(ROOT / "configs" / "smoke.toml"), *TINY, f"runs_dir={tmp_path / 'runs'}",
              f"output_dir={blocker}"])
    assert rc == 2 and time.time() - t0 < 30  # no training happened
    err = capsys.readouterr().err
    assert str(blocker) in err and "not a directory" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
    rc = cli(["prune", "--model", str(tiny_dir), "--config", str(ROOT / "configs" / "seed.toml"),
              "--output", str(blocker), "--no-train"])
    assert rc == 2 and str(blocker) in capsys.readouterr().err
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("override,needle", [("train.learning_rate=inf", "train.learning_rate: inf is not a finite"),
                                             ("train.epochs=-3", "train.epochs=-3.0: must be >= 0"),
                                             ("train.epochs=nan", "train.epochs: nan is not a finite"),
                                             ("name=../x", "name='../x': a run name is a plain folder name"),
                                             ("name=/tmp/abs", "a run name is a plain folder name"),
                                             ("bogus=1", "unknown top-level key(s) ['bogus']")])
def test_bad_numbers_and_names_are_refused_naming_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs" / "smoke.toml", [override])
    assert needle in str(e.value) and ": :" not in str(e.value)


def test_a_start_that_fails_leaves_the_old_run_folder_as_it_was(tmp_path, capsys):
    from summprune.config import save_config

    run_dir = tmp_path / "runs" / "smoke"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"event": "initial"}\n')
    # (a) the same config, but its data file is missing: refused before anything is written
    args = [f"runs_dir={tmp_path / 'runs'}", f"data.dataset={tmp_path / 'missing.jsonl'}"]
    save_config(load_config(ROOT / "configs" / "smoke.toml", args), run_dir / "config.json")
    before = (run_dir / "config.json").read_text()
    assert cli(["run", str(ROOT / "configs" / "smoke.toml"), *args]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    assert (run_dir / "metrics.jsonl").read_text() == '{"event": "initial"}\n'
    assert (run_dir / "config.json").read_text() == before
    # (b) another config: refused, naming what differs and the way out
    assert cli(["run", str(ROOT / "configs" / "smoke.toml"), f"runs_dir={tmp_path / 'runs'}", "train.epochs=3"]) == 2
    err = capsys.readouterr().err
    assert "holds a run of another config" in err and "train.epochs" in err and "--overwrite" in err
    assert (run_dir / "config.json").read_text() == before
    assert (run_dir / "metrics.jsonl").read_text() == '{"event": "initial"}\n'


def test_cli_errors_for_files_and_dirs_are_messages(tmp_path, tiny_dir, capsys):
    (tmp_path / "afile").write_text("x")
    assert cli(["export", "--model", str(tiny_dir), "--output", str(tmp_path / "afile")]) == 2
    assert "afile" in capsys.readouterr().err
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert cli(["export", "--model", str(tiny_dir), "--output", str(full)]) == 2
    assert "not a model directory" in capsys.readouterr().err and (full / "notes.txt").is_file()
    assert cli(["random-model", "--config-dir", str(tmp_path / "nope"), "--output", str(tmp_path / "r")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_jsonl_lines_split_on_newlines_only_and_a_bom_is_fine(tmp_path):
    from summprune.data import load_split

    path = tmp_path / "d.jsonl"
    rows = [{"text": "A bill\u2028with a line separator\u0085inside.", "summary": "s\u2029ep"}, {"text": "t", "summary": "u"}]
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    ds = load_split(str(path), "test")
    assert list(ds["text"]) == [r["text"] for r in rows] and list(ds["summary"]) == [r["summary"] for r in rows]


def test_pickle_only_model_dirs_are_refused_not_unpickled(tmp_path, tiny_model, capsys):
    from summprune.export import load_model

    d = tmp_path / "old"
    tiny_model.save_pretrained(d)
    (d / "model.safetensors").unlink()
    torch.save(tiny_model.state_dict(), d / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin is a pickle-based checkpoint"):
        load_model(d)
    assert cli(["report", "--model", str(d)]) == 2 and "pickle" in capsys.readouterr().err
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"summary": "a b"}) + "\n")
    (tmp_path / "p.csv").write_text('"ID","Predict"\n"0","a b"\n')
    sr = _script("score_result")
    assert sr.main(["--predictions", str(tmp_path / "p.csv"), "--references", str(refs), "--model", str(d)]) == 2
    err = capsys.readouterr().err
    assert "pickle" in err and "Traceback" not in err


def test_compact_weights_file_cannot_point_out_of_the_model_dir(tmp_path, tiny_model):
    from summprune.export import load_model, save_compact

    d = save_compact(tiny_model, tmp_path / "c")
    man = json.loads((d / "compact.json").read_text())
    for bad in ("../other/compact.safetensors", "/etc/passwd"):
        man["weights_file"] = bad
        (d / "compact.json").write_text(json.dumps(man))
        with pytest.raises(ValueError, match="is not a file name in"):
            load_model(d)


def test_an_empty_reference_scores_zero_with_a_warning(tmp_path, capsys):
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"summary": "Amends the Act."}) + "\n" + json.dumps({"summary": ""}) + "\n")
    (tmp_path / "p.csv").write_text('"ID","Predict"\n"0","Amends the Act."\n"1","anything"\n')
    sr = _script("score_result")
    assert sr.main(["--predictions", str(tmp_path / "p.csv"), "--references", str(refs), "--model", "none",
                    "--json", str(tmp_path / "s.json")]) == 0
    assert "1 reference(s) with an empty summary score 0 (row(s) 1)" in capsys.readouterr().err
    assert json.loads((tmp_path / "s.json").read_text())["kaggle_score"] == pytest.approx(0.5)


def test_score_result_without_a_submission_points_at_generate_csv(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"summary": "x"}) + "\n")
    assert _script("score_result").main(["--references", str(refs), "--model", "none"]) == 2
    assert "python3 generate_csv.py" in capsys.readouterr().err


def test_a_model_with_non_finite_weights_is_never_exported(tmp_path, tiny_model):
    from summprune import sparsity
    from summprune.export import export_model

    with torch.no_grad():
        tiny_model.encoder.block[0].layer[1].DenseReluDense.wi.weight[0, 0] = float("nan")
    for fmt in ("hf", "compact", "course"):
        with pytest.raises(ValueError, match=r"not all finite .*DenseReluDense\.wi"):
            export_model(tiny_model, tmp_path / fmt, format=fmt)
        assert not (tmp_path / fmt).exists()
    # a NaN is not counted as a usable non-zero weight
    assert sparsity.nonzero_count(tiny_model) == sparsity.dense_param_count(tiny_model) - 1


def test_a_second_run_of_the_same_name_is_refused(tmp_path, capsys):
    import os

    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / ".smoke.lock").write_text(f"{os.getppid()}\n")  # a live process holds it
    rc = cli(["run", str(ROOT / "configs" / "smoke.toml"), *TINY, f"runs_dir={runs}",
              f"output_dir={tmp_path / 'm'}"])
    assert rc == 2 and f"being written by process {os.getppid()}" in capsys.readouterr().err
    assert not (runs / "smoke").exists()


def test_run_records_how_the_model_reads_its_input(tmp_path):
    from summprune.pipeline import run

    cfg = load_config(ROOT / "configs" / "smoke.toml", [*TINY, f"runs_dir={tmp_path}", f"output_dir={tmp_path / 'm'}",
                                                        "prune.stages.0.recover_steps=1", "prune.stages.1.recover_steps=1"])
    run(cfg, log_print=lambda s: None)
    info = json.loads((tmp_path / "m" / "pruning.json").read_text())
    assert info["data"] == {"prefix": "summarize: ", "max_source_length": 32}
    assert not (tmp_path / ".smoke.lock").exists()  # released


def test_score_plot_puts_more_compression_to_the_right(tmp_path, monkeypatch):
    """Both panels share one x axis: it is inverted once (inverting each panel cancelled out)."""
    from summprune import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or path)
    recs = [{"event": "finetuned", "kaggle_score": 0.5, "rougeLsum": 0.4, "mask_ratio": 1.0, "nonzero_ratio": 1.0},
            {"event": "stage", "stage": 1, "kaggle_score": 0.45, "rougeLsum": 0.35, "mask_ratio": 0.5,
             "nonzero_ratio": 0.5, "groups": {}}]
    plots.plot_score_vs_ratio(recs, tmp_path / "s.png")
    left, right = figs[0].axes[0].get_xlim()
    assert left > right  # 1.0 (dense) on the left, compression grows to the right


def test_messages_name_the_override_the_file_and_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^override 'prune.stages.0.amounts.enc_ffn=1.5' \(on .*seed.toml\): "
                                          r"prune.stages\[0\].amounts.enc_ffn=1.5"):
        load_config(ROOT / "configs" / "seed.toml", ["prune.stages.0.amounts.enc_ffn=1.5"])
    with pytest.raises(ConfigError, match=r"^.*bad.toml: prune.stages\[0\]"):  # a bad file value is the file's
        import shutil

        shutil.copytree(ROOT / "configs" / "shared", tmp_path / "shared")  # what seed.toml extends
        bad = tmp_path / "bad.toml"
        bad.write_text((ROOT / "configs" / "seed.toml").read_text().replace("enc_ffn = 0.1", "enc_ffn = 1.1", 1))
        load_config(bad)
    binary = tmp_path / "model.toml"
    binary.write_bytes(b"\x00\xff\xfe\x00")
    with pytest.raises(ConfigError, match="model.toml: not a UTF-8 text file"):
        load_config(binary)
    from summprune.data import DataError, load_split, train_val_split

    with pytest.raises(DataError, match=r"data.val_size=50 must be smaller"):
        train_val_split(load_split("synthetic", "train", synthetic_docs=20), 50)


def test_billsum_offline_is_a_message_saying_how_to_pass_local_files(tmp_path, monkeypatch, capsys):
    import datasets

    from summprune import data as D

    def offline(*a, **kw):
        raise ConnectionError("Couldn't reach 'FiscalNote/billsum' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(D, "hub_unreachable", lambda timeout=3.0: None)  # the probe passes; the load fails
    monkeypatch.setattr(datasets, "load_dataset", offline)
    from summprune.data import DataError, load_split

    with pytest.raises(DataError, match=r"cannot load it from the Hugging Face hub \(ConnectionError.*offline, give a "
                                        r"local JSONL/CSV/parquet file"):
        load_split("billsum", "train")
    assert cli(["run", str(ROOT / "configs" / "seed.toml"), "model.name=tiny", f"runs_dir={tmp_path / 'runs'}",
                f"output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert "Hugging Face hub" in err and "Traceback" not in err
    assert "data.dataset=/data/billsum" in err  # the config's spelling, for run


def test_an_unreachable_hub_fails_fast_with_each_commands_own_option(tmp_path, tiny_dir, monkeypatch, capsys):
    """Offline, `datasets` spent ~30 s on retries before it failed: a short probe says so at once,
    and each command names the option it takes (the scripts take --data / --references, not the
    config's data.dataset=)."""
    import datasets
    from huggingface_hub import constants

    from summprune import data as D

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(D, "hub_unreachable", lambda timeout=3.0: "huggingface.co:443: Name or service not known")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: pytest.fail("the hub was tried"))
    assert _script("generate_csv").main(["--model", str(tiny_dir), "--output", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert "--data billsum: 'FiscalNote/billsum' split 'test': the Hugging Face hub is unreachable" in err
    assert "e.g. --data /data/billsum" in err and "data.dataset" not in err and "HF_HUB_OFFLINE=1" in err
    (tmp_path / "s.csv").write_text('"ID","Predict"\n"0","a"\n', encoding="utf-8")
    assert _script("score_result").main(["--predictions", str(tmp_path / "s.csv"), "--model", "none"]) == 2
    err = capsys.readouterr().err
    assert "the Hugging Face hub is unreachable" in err and "e.g. --references /data/billsum" in err
    assert cli(["run", str(ROOT / "configs" / "seed.toml"), "model.name=tiny", f"runs_dir={tmp_path / 'runs'}",
                f"output_dir={tmp_path / 'out'}"]) == 2
    assert "e.g. data.dataset=/data/billsum" in capsys.readouterr().err
    assert not list(tmp_path.glob("s.*.json")) and not list(tmp_path.glob("s.csv.*"))

    # HF_HUB_OFFLINE=1: no probe; datasets reads its cache (here: nothing there)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(D, "hub_unreachable", lambda timeout=3.0: pytest.fail("probed in offline mode"))

    def cache_only(*a, **kw):
        raise ConnectionError("Couldn't reach 'FiscalNote/billsum' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", cache_only)
    with pytest.raises(D.HubError, match="OfflineModeIsEnabled"):
        D.load_split("billsum", "test")


def test_the_hub_probe(monkeypatch):
    import socket

    from summprune.data import hub_unreachable

    for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(v, raising=False)

    def no_dns(address, timeout=None):
        assert timeout == 3.0
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_dns)
    assert hub_unreachable() == "huggingface.co:443: Name or service not known"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")  # the hub clients go through it: no verdict
    assert hub_unreachable() is None


def test_every_command_line_option_has_help_text():
    import argparse

    from summprune.__main__ import build_parser

    parsers = [build_parser(), _script("generate_csv").build_parser(), _script("score_result")._parser()]
    for action in parsers[0]._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    for p in parsers:
        for a in p._actions:
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                assert a.help, f"{p.prog}: {a.option_strings or a.dest} has no help text"


def test_cli_help_is_plain_text_and_shows_the_random_models_default(capsys):
    with pytest.raises(SystemExit):
        cli(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "``" not in out and "prune a saved model" in out
    with pytest.raises(SystemExit):
        cli(["random-model", "--help"])
    assert "(default: ../shared/t5-small" in " ".join(capsys.readouterr().out.split())


def test_review_findings_stay_fixed(tmp_path, tiny_dir, tiny_model):
    """Regressions found in review: each of these lost work or data before its fix."""
    from summprune.config import load_config as lc
    from summprune.io.files import LockedError, atomic_dir, lock_file
    from summprune.methods import build_methods

    # a gradual run whose only recovery is the final one still gets its teacher
    cfg = lc(None, ["prune.gradual.target_nonzero_ratio=0.5", "prune.gradual.final_recover_steps=5",
                    "prune.gradual.distill_alpha=0.5"])
    assert build_methods(cfg.prune)[0].distills()
    # an output given with a trailing slash keeps its work dir beside it, not inside
    from summprune.pipeline import prune_existing

    prune_existing(tiny_dir, lc(ROOT / "configs" / "seed.toml", ["export_format=hf"]), str(tmp_path / "p") + "/",
                   train=False, log_print=lambda s: None)
    assert (tmp_path / "p" / "model.safetensors").is_file() and not (tmp_path / "p" / ".trainer").exists()
    # a user's dated backup beside the output is not taken for a stale temp dir
    backup = tmp_path / "m.old-2024-06-01"
    backup.mkdir()
    with atomic_dir(tmp_path / "m") as t:
        (t / "x").write_text("1")
    assert backup.is_dir()
    # an empty lock file (a holder between create and write) is held, not stale
    (tmp_path / "o.lock").write_text("")
    with pytest.raises(LockedError):
        with lock_file(tmp_path / "o.lock", "o"):
            pass
    # a run folder (config.json, no weights) is never replaced by an export
    from summprune.export import save_hf

    run_dir = tmp_path / "runs" / "x"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    (run_dir / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(FileExistsError, match="not a model directory"):
        save_hf(tiny_model, run_dir)
    assert (run_dir / "metrics.jsonl").is_file()
    # an override that breaks a list entry is an error naming it, not a traceback
    with pytest.raises(ConfigError, match=r"override 'prune.gradual.sensitivity_levels.0.x=1'"):
        lc(ROOT / "configs" / "gradual_kd.toml", ["prune.gradual.sensitivity_levels.0.x=1"])
    with pytest.raises(ConfigError, match=r"^override 'prune.stages.0.recover_steps=-1'"):
        lc(ROOT / "configs" / "seed.toml", ["prune.stages.0.recover_steps=-1"])


def test_a_kill_between_the_two_renames_of_a_swap_keeps_the_previous_copy(tmp_path):
    import subprocess
    import sys

    from summprune.io.files import atomic_dir

    with atomic_dir(tmp_path / "m") as t:
        (t / "v").write_text("1")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # what a writer killed after `out -> out.old-*` and before `tmp -> out` leaves
    (tmp_path / "m").rename(tmp_path / f"m.old-{dead.pid}-0123abcd")
    (tmp_path / f"m.tmp-{dead.pid}-4567cdef").mkdir()
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "m") as t:  # the next writer starts (and fails)
            raise RuntimeError("boom")
    assert (tmp_path / "m" / "v").read_text() == "1"  # the previous copy is back in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# ------------------------------------------------------------------------------ issue 22 (fuzz)


def test_random_model_writes_atomically_with_a_normal_files_mode(tmp_path, tiny_dir, monkeypatch, capsys):
    """random-model wrote 0600 files (safetensors' mkstemp) straight into the output."""
    import errno
    import os

    from summprune.io import hf

    old = os.umask(0o022)
    try:
        assert cli(["random-model", "--config-dir", str(tiny_dir), "--output", str(tmp_path / "r")]) == 0
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "r").iterdir()}
    assert "model.safetensors" in modes and "tokenizer.json" in modes and set(modes.values()) == {"0o644"}, modes

    def full(self, d):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hf.TokenizerFiles, "save_pretrained", full)
    assert cli(["random-model", "--config-dir", str(tiny_dir), "--output", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'r2'}: cannot be written (No space left on device)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "tiny"]  # nothing half-written


def test_random_model_checks_the_config_and_the_tokenizer_first(tmp_path, tiny_dir, capsys):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(tiny_dir, src)
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "num_layers": 1_000_000}))  # hung before
    assert cli(["random-model", "--config-dir", str(src), "--output", str(tmp_path / "r")]) == 2
    assert f"{src / 'config.json'}: num_layers=1,000,000 exceeds" in capsys.readouterr().err
    (src / "config.json").write_text(json.dumps(cfg))
    (src / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "Nope"}}))
    assert cli(["random-model", "--config-dir", str(src), "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{src / 'tokenizer.json'}: not a tokenizer" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_report_refuses_a_non_finite_model(tmp_path, tiny_model, capsys):
    """An hf model with NaN weights loaded and generated empty summaries, exit 0."""
    with torch.no_grad():
        tiny_model.decoder.block[1].layer[0].SelfAttention.v.weight[1, 2] = float("nan")
    tiny_model.save_pretrained(tmp_path / "nan")
    assert cli(["report", "--model", str(tmp_path / "nan")]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors: the weights are not all finite" in err and "SelfAttention.v" in err


def test_export_on_a_full_disk_is_a_message_naming_the_output(tmp_path, tiny_dir, monkeypatch, capsys):
    import errno

    from summprune.io import hf

    def full(info, d):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hf, "write_pruning", full)
    out = tmp_path / "out"
    assert cli(["export", "--model", str(tiny_dir), "--output", str(out), "--format", "hf"]) == 2
    err = capsys.readouterr().err
    assert f"error: {out}: cannot be written (No space left on device)" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def test_a_run_saved_before_auto_prefix_is_the_same_run(tmp_path):
    """Run folders saved when data.prefix defaulted to "summarize: " resume under 'auto' where that
    is what 'auto' resolves to (T5), and only there."""
    import json

    from summprune.config import load_config, config_to_dict
    from summprune.pipeline import run_folder_matches
    cfg = load_config(None, ["model.name=tiny", f"runs_dir={tmp_path}", "name=r"])
    d = tmp_path / "r"; d.mkdir()
    old = json.loads(json.dumps(config_to_dict(cfg))); old["data"]["prefix"] = "summarize: "
    (d / "config.json").write_text(json.dumps(old))
    assert run_folder_matches(d, cfg, False)
    old["data"]["prefix"] = "sum: "
    (d / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="data.prefix"):
        run_folder_matches(d, cfg, False)
    bart = load_config(None, ["model.name=tiny", "model.tiny_family=bart", f"runs_dir={tmp_path}", "name=r"])
    old = json.loads(json.dumps(config_to_dict(bart))); old["data"]["prefix"] = "summarize: "
    (d / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="data.prefix"):  # BART's 'auto' is no prefix: another run
        run_folder_matches(d, bart, False)


# ---- issue 32: locks that say what to do, a failed start that leaves nothing, overrides anywhere ----

def test_a_lock_whose_pid_was_reused_is_taken_over_and_an_old_one_says_how_to_remove_it(tmp_path):
    """A lock records its holder's pid and start time: the same pid now running a process started
    later (pid 1 here, which started long before this lock's time) is a stale lock, taken over. A
    lock of the older form (pid only) held by a live process is refused naming the lock file and
    that it can be deleted when no summprune command runs."""
    import os

    from summprune.io.files import LockedError, _start_time, lock_file

    if _start_time(1) is None:
        pytest.skip("no /proc here: start times are not known")
    lock = tmp_path / ".o.lock"
    lock.write_text(f"1 {int(_start_time(1)) + 10**9}\n")  # "process 1, started later than it did"
    with lock_file(lock, "model directory o"):
        assert lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()
    lock.write_text("1\n")
    with pytest.raises(LockedError) as e:
        with lock_file(lock, "model directory o"):
            pass
    assert "process 1" in str(e.value) and f"delete {lock}" in str(e.value) and "no summprune command" in str(e.value)


@pytest.mark.parametrize("kind", ["directory", "garbage"])
def test_a_lock_that_is_a_directory_or_garbage_says_so(tmp_path, tiny_dir, capsys, kind):
    lock = tmp_path / ".o.lock"
    if kind == "directory":
        lock.mkdir()
    else:
        lock.write_bytes(b"\x00\x01 not a pid at all")
    assert cli(["export", "--model", str(tiny_dir), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "process ?" not in err and f"delete {lock}" in err
    assert ("is a directory" if kind == "directory" else "does not hold a process id") in err
    assert not (tmp_path / "o").exists() and (lock.is_dir() if kind == "directory" else lock.is_file())


def _read_only(monkeypatch, pred):
    """Writes and mkdirs of the paths ``pred`` accepts fail as on a read-only file system (root,
    which the tests may run as, writes through a chmod)."""
    import errno
    from pathlib import Path

    real_write, real_mkdir = Path.write_text, Path.mkdir

    def write_text(self, *a, **kw):
        if pred(self):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_write(self, *a, **kw)

    def mkdir(self, *a, **kw):
        if pred(self) and not self.is_dir():
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_a_read_only_folder_names_the_lock_or_the_runs_dir_not_a_temp_file(tmp_path, tiny_dir, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, lambda p: ro in p.parents or p == ro)
    for argv in (["export", "--model", str(tiny_dir), "--output", str(ro / "o")],
                 ["prune", "--model", str(tiny_dir), "--config", str(ROOT / "configs" / "seed.toml"),
                  "--output", str(ro / "o"), "--no-train"]):
        assert cli(argv) == 2
        err = capsys.readouterr().err
        assert f"cannot write its lock {ro / '.o.lock'} (Read-only file system)" in err, err
        assert "read-only file system" in err and "[Errno" not in err and ".o.lock." not in err
    assert cli(["run", str(ROOT / "configs" / "smoke.toml"), *TINY, f"runs_dir={ro}",
                f"output_dir={tmp_path / 'm'}"]) == 2
    err = capsys.readouterr().err
    assert f"run folder {ro / 'smoke'}: cannot write its lock {ro / '.smoke.lock'}" in err and "[Errno" not in err
    assert cli(["run", str(ROOT / "configs" / "smoke.toml"), *TINY, f"runs_dir={ro / 'runs'}",
                f"output_dir={tmp_path / 'm'}"]) == 2
    err = capsys.readouterr().err
    assert f"runs_dir={ro / 'runs'}: cannot be created (Read-only file system)" in err and "[Errno" not in err
    assert list(ro.iterdir()) == []


def test_a_start_that_fails_its_prefix_check_leaves_no_run_folder(tmp_path, capsys):
    """docs/running.md: a failed start leaves the folder untouched; a prefix too long for the input
    length used to leave config.json and metrics.jsonl, and the corrected rerun was refused as
    "another config"."""
    args = ["run", str(ROOT / "configs" / "smoke.toml"), *TINY, f"runs_dir={tmp_path / 'runs'}",
            f"output_dir={tmp_path / 'm'}", "prune.stages.0.recover_steps=1", "prune.stages.1.recover_steps=1"]
    assert cli([*args, "data.prefix=" + "summarize this bill please " * 8]) == 2
    assert "leaves no room for the document" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "smoke").exists()
    assert cli(args) == 0
    assert (tmp_path / "m").is_dir()


def test_overrides_may_follow_the_flags(tmp_path, tiny_dir, capsys):
    """``run CONFIG --overwrite key=value`` (and ``prune ... --overwrite key=value``) read the
    overrides after the flag as they do before it (here one the config check refuses, naming it:
    proof that it was read); a stray flag is still refused."""
    for argv in (["run", str(ROOT / "configs" / "smoke.toml"), "name=x", "--overwrite", "train.epochs=-3"],
                 ["prune", "--model", str(tiny_dir), "name=x", "--config", str(ROOT / "configs" / "seed.toml"),
                  "--output", str(tmp_path / "o"), "--overwrite", "train.epochs=-3"]):
        assert cli(argv) == 2
        assert "train.epochs=-3.0: must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["run", "c.toml", "--overwrite", "--bogus", "a=1"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err

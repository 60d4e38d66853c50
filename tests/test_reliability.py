"""Reliability of the run and prune commands (issue 22): folders adopted only when they are
ours, Trainer checkpoints that a kill left incomplete, config values checked before any work."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT
from summprune.__main__ import main as cli
from summprune.config import ConfigError, load_config

TINY = ["model.name=tiny", "model.tiny_d_model=16", "model.tiny_d_ff=32", "model.tiny_vocab=200",
        "data.dataset=synthetic", "data.synthetic_docs=24", "data.val_size=4", "data.max_source_length=32",
        "data.max_target_length=16", "train.epochs=1", "eval.docs=2"]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("content", ["notes.txt", "metrics.jsonl"])
def test_run_never_adopts_nor_empties_a_folder_that_is_not_a_run_folder(tmp_path, capsys, overwrite, content):
    """An unrelated folder at runs_dir/name (or one with a run's file names but no run config)
    is refused with and without --overwrite, and keeps what it held."""
    run_dir = tmp_path / "runs" / "smoke"
    run_dir.mkdir(parents=True)
    (run_dir / content).write_text("mine")
    (run_dir / "config.json").write_text('{"model_type": "t5"}')  # a model's config, not a run's
    rc = cli(["run", str(ROOT / "configs" / "smoke.toml"), *TINY, f"runs_dir={tmp_path / 'runs'}",
              f"output_dir={tmp_path / 'm'}", *(["--overwrite"] if overwrite else [])])
    assert rc == 2 and "is not a run folder" in capsys.readouterr().err
    assert (run_dir / content).read_text() == "mine"
    assert json.loads((run_dir / "config.json").read_text()) == {"model_type": "t5"}


def test_incomplete_trainer_checkpoints_are_skipped_and_removed(tmp_path, tiny_model):
    from summprune.config import TrainConfig
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer
    from summprune import data as D
    from summprune.train import finetune, last_checkpoint

    import datasets

    rows = make_corpus(8)
    tok = train_tokenizer([r["text"] for r in rows], vocab_size=100)
    ds = D.tokenize(datasets.Dataset.from_list([{"text": r["text"], "summary": r["summary"]} for r in rows]),
                    tok, "summarize: ", 32, 16)
    cfg = TrainConfig(epochs=1, batch_size=4, save_steps=1, progress_bar=False)
    finetune(tiny_model, tok, ds, cfg, tmp_path, checkpoints=True)
    good = last_checkpoint(tmp_path)
    assert good is not None and good.endswith("checkpoint-2")
    # a kill during the save of checkpoint-3: the weights written, trainer_state.json not yet
    torn = tmp_path / "checkpoint-3"
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"")
    assert last_checkpoint(tmp_path) == good
    assert not torn.exists()
    # resuming from what is left works
    finetune(tiny_model, tok, ds, cfg, tmp_path, checkpoints=True)


@pytest.mark.parametrize("override,needle", [
    ("train.lr_scheduler=bogus", "train.lr_scheduler: bogus is not a valid SchedulerType"),
    ("model.tiny_heads=0", "model.tiny_heads=0: must be >= 1"),
    ("train.batch_size=100000000000000000000", "train.batch_size=100000000000000000000: must be <= 1,000,000"),
    ("prune.groups.enc_ffn=([", "prune.groups.enc_ffn='([': not a regular expression"),
    ("prune.groups.enc_ffn=nothing_matches_this", "prune.groups: group(s) ['enc_ffn'] match no nn.Linear"),
])
def test_bad_values_fail_before_the_run_folder_is_touched(tmp_path, capsys, override, needle):
    rc = cli(["run", str(ROOT / "configs" / "smoke.toml"), *TINY, f"runs_dir={tmp_path / 'runs'}",
              f"output_dir={tmp_path / 'm'}", override])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "runs" / "smoke").exists() and not (tmp_path / "m").exists()


def test_a_misspelled_override_is_blamed_on_the_override_not_the_file():
    for item in ("train.batch_sise=3", "bogus=1"):
        with pytest.raises(ConfigError) as e:
            load_config(ROOT / "configs" / "smoke.toml", [item])
        assert str(e.value).startswith(f"override {item!r}"), str(e.value)


def test_deeply_nested_toml_is_a_config_error(tmp_path):
    f = tmp_path / "deep.toml"
    f.write_text("a = " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(f)


def test_a_run_folder_saved_before_a_new_config_key_still_matches(tmp_path):
    """A key added to the config since a run was saved (the saved config.json lacks it, its default
    changes nothing) does not make the folder "another config": the run resumes."""
    import json

    from summprune.config import config_to_dict, load_config
    from summprune.pipeline import run_folder_matches

    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=r"])
    d = tmp_path / "r"
    d.mkdir()
    saved = json.loads(json.dumps(config_to_dict(cfg)))
    saved["train"].pop("seed")  # as if `train.seed` had been added after this run was saved
    (d / "config.json").write_text(json.dumps(saved))
    assert run_folder_matches(d, cfg, overwrite=False) is True
    saved["train"]["learning_rate"] = 123.0  # a real difference is still one
    (d / "config.json").write_text(json.dumps(saved))
    import pytest

    with pytest.raises(ValueError, match="train.learning_rate"):
        run_folder_matches(d, cfg, overwrite=False)

"""Every config file loads and validates; overrides and bad values give clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT
from summprune.config import ConfigError, load_config, save_config
from summprune.methods.stages import expand_stages

CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


def test_there_are_configs():
    names = {p.stem for p in CONFIGS}
    assert {"seed", "smoke"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads(path):
    cfg = load_config(path)
    assert cfg.name
    # the header comment (the leading '#' lines) gives the command that runs it
    lines = path.read_text().splitlines()
    header = "\n".join(lines[:next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))])
    assert f"python -m summprune run configs/{path.name}" in header or \
        f"python -m summprune prune --model DIR --config configs/{path.name}" in header, header[:300]


def test_defaults_are_the_course_hyperparameters():
    cfg = load_config(None)
    t = cfg.train
    assert (t.learning_rate, t.weight_decay, t.lr_scheduler, t.epochs, t.seed, t.batch_size) == (
        2e-5, 0.01, "linear", 4.0, 42, 2)
    assert cfg.data.prefix == "auto" and cfg.data.max_source_length == 1024  # the family's: T5 "summarize: "
    assert cfg.data.max_target_length == 128 and cfg.eval.max_length == 128
    assert cfg.prune.tie_mode == "tied"


def test_overrides_are_typed():
    cfg = load_config(ROOT / "configs" / "seed.toml", ["train.learning_rate=1e-4", "train.epochs=2",
                                                       "name=x", "prune.tie_mode=course"])
    assert cfg.train.learning_rate == 1e-4 and cfg.train.epochs == 2.0 and cfg.name == "x"
    assert cfg.prune.tie_mode == "course"


def test_repeat_unrolls():
    cfg = load_config(ROOT / "configs" / "seed.toml")
    stages = expand_stages(cfg.prune.stages)
    assert len(stages) == 6 and all(s.repeat == 1 for s in stages)


@pytest.mark.parametrize("text, match", [
    ('[[prune.stages]]\namounts = { enc_ffn = 1.0 }', "must be in \\[0, 1\\)"),
    ('[[prune.stages]]\namounts = { enc_ffn = -0.2 }', "must be in \\[0, 1\\)"),
    ('[[prune.stages]]\namounts = { ffn = 0.2 }', "unknown group 'ffn'"),
    ('[train]\nlearning_rate = "fast"', "train.learning_rate: expected a number"),
    ('[train]\nlerning_rate = 1e-4', "unknown key\\(s\\) \\['lerning_rate'\\]"),
    ('[prune]\ntie_mode = "maybe"', "tie_mode='maybe'"),
    ('[eval]\nmax_length = 0', "eval.max_length=0"),
    ('name = ', "invalid TOML"),
])
def test_bad_configs_name_file_and_key(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        load_config(p)
    assert str(p) in str(e.value)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.epochs"])


def test_resolved_config_is_saved(tmp_path):
    cfg = load_config(ROOT / "configs" / "seed.toml")
    save_config(cfg, tmp_path / "c.json")
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["train"]["learning_rate"] == 2e-5 and len(d["prune"]["stages"]) == 2


def test_extends_reads_the_shared_file_first_and_refuses_cycles(tmp_path):
    from summprune.config import ConfigError

    (tmp_path / "shared.toml").write_text("[eval]\nnum_beams = 5\nmax_length = 100\n")
    (tmp_path / "a.toml").write_text('extends = "shared.toml"\nname = "a"\n[eval]\nmax_length = 64\n')
    cfg = load_config(tmp_path / "a.toml")
    assert (cfg.eval.num_beams, cfg.eval.max_length, cfg.name) == (5, 64, "a")  # the file wins, table by table
    (tmp_path / "b.toml").write_text('extends = "c.toml"\n')
    (tmp_path / "c.toml").write_text('extends = "b.toml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "b.toml")
    (tmp_path / "d.toml").write_text('extends = "missing.toml"\n')
    with pytest.raises(ConfigError, match="missing.toml"):
        load_config(tmp_path / "d.toml")

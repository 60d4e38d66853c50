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


def test_a_misspelled_table_in_an_override_is_blamed_on_the_override():
    """trian.batch_size=3 was blamed on the config file."""
    with pytest.raises(ConfigError, match=r"^override 'trian.batch_size=3' \(on .*smoke.toml\): unknown top-level key\(s\) \['trian'\]"):
        load_config(ROOT / "configs" / "smoke.toml", ["trian.batch_size=3"])
    with pytest.raises(ConfigError, match=r"^override 'prune.stagse.0.x=1' \(on <defaults>\): prune: unknown key\(s\) \['stagse'\]"):
        load_config(None, ["prune.stagse.0.x=1"])


def test_a_long_extends_chain_is_no_cycle_and_the_depth_limit_is_named(tmp_path):
    """A legitimate 12-deep chain was called a cycle."""
    from summprune.config import MAX_EXTENDS_DEPTH

    def chain(n: int, prefix: str) -> Path:
        for i in range(n):
            nxt = f'extends = "{prefix}{i + 1}.toml"\n' if i < n - 1 else ""
            (tmp_path / f"{prefix}{i}.toml").write_text(f'{nxt}name = "{prefix}{i}"\n[eval]\nmax_length = {10 + i}\n')
        return tmp_path / f"{prefix}0.toml"

    cfg = load_config(chain(12, "c"))
    assert (cfg.name, cfg.eval.max_length) == ("c0", 10)
    load_config(chain(MAX_EXTENDS_DEPTH, "ok"))
    with pytest.raises(ConfigError, match=rf"more than {MAX_EXTENDS_DEPTH} files \(MAX_EXTENDS_DEPTH\)") as e:
        load_config(chain(MAX_EXTENDS_DEPTH + 1, "deep"))
    assert "cycle" not in str(e.value)


def test_extends_naming_a_fifo_a_device_or_a_directory_says_what_it_is(tmp_path):
    """It said "does not exist" (and never opened them: a FIFO would block)."""
    import os

    os.mkfifo(tmp_path / "fifo.toml")
    (tmp_path / "dir.toml").mkdir()
    for target, what in (("fifo.toml", "is a FIFO"), ("/dev/zero", "is a device"), ("dir.toml", "is a directory")):
        (tmp_path / "top.toml").write_text(f'extends = "{target}"\n')
        with pytest.raises(ConfigError, match=f"{what}.*, not a regular file") as e:
            load_config(tmp_path / "top.toml")
        assert "does not exist" not in str(e.value)
    with pytest.raises(ConfigError, match="is a directory, not a regular file"):
        load_config(tmp_path / "dir.toml")


def test_threads_are_bounded():
    """threads=100000 was a raw MemoryError from torch at the start of a run."""
    from summprune.limits import max_threads

    assert load_config(None, [f"threads={max_threads()}"]).threads == max_threads()
    with pytest.raises(ConfigError, match=rf"override 'threads=100000'.*threads=100000: more than {max_threads()}"):
        load_config(None, ["threads=100000"])
    with pytest.raises(ConfigError, match=r"threads=-1: must be a whole number >= 1 \(0 = torch's default\)"):
        load_config(None, ["threads=-1"])

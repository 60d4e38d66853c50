"""One memory budget before any allocation (summprune.limits): every loader and generation refuse,
naming the figure and the limit, what would not fit; tiny files whose config claims a huge shape
(never allocated: the checks run on the meta device) and a low limit set by SUMMPRUNE_MAX_MEMORY."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from summprune import limits
from summprune.export import load_model, save_compact, save_course, save_hf

#: 1.05e9 parameters: the issue's compact int8 file (1.7 MB on disk) expanded to 13.7 GB at load
HUGE = {"d_model": 32_768, "d_ff": 4_096}


@pytest.fixture(autouse=True)
def _no_limit_set(monkeypatch):
    monkeypatch.delenv(limits.ENV, raising=False)


def _claims_huge(d: Path) -> Path:
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, **HUGE}))
    return d


def _refused(fn, limit: str, monkeypatch, *needles):
    monkeypatch.setenv(limits.ENV, limit)
    with pytest.raises(limits.MemoryBudgetError) as e:
        fn()
    msg = str(e.value)
    assert "of memory, more than" in msg and f"{limits.ENV}={limit}" in msg and "nothing was allocated" in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_parse_size_and_a_bad_limit():
    assert limits.parse_size("30GB") == 30 * 10**9
    assert limits.parse_size("512MiB") == 512 * 2**20
    assert limits.parse_size("1.5 gb") == 1_500_000_000
    assert limits.parse_size("1000") == 1000
    for bad in ("lots", "-1GB", "3 parsecs", ""):
        with pytest.raises(ValueError, match="not a size"):
            limits.parse_size(bad)


def test_a_bad_limit_is_named(monkeypatch):
    monkeypatch.setenv(limits.ENV, "plenty")
    with pytest.raises(ValueError, match=rf"\${limits.ENV}: 'plenty' is not a size"):
        limits.check_memory(10, "x")


def test_the_default_limit_is_the_available_memory(monkeypatch):
    avail = limits.available_memory()
    assert avail is not None and avail > 0
    limits.check_memory(1, "one byte")
    with pytest.raises(limits.MemoryBudgetError, match="the memory available on this machine"):
        limits.check_memory(avail * 1000, "a thousand machines' worth")


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_compact_whose_config_claims_a_huge_model_is_refused_before_loading(tmp_path, tiny_model, monkeypatch, dtype):
    d = save_compact(tiny_model, tmp_path / "c", dtype=dtype)
    load_model(d)  # the honest file loads under the default limit
    _claims_huge(d)
    msg = _refused(lambda: load_model(d), "2GB", monkeypatch, str(d / "config.json"), "4.4 GB", "parameters")
    assert "1,102,577,920 parameters" in msg


def test_hf_and_course_whose_config_claims_a_huge_model_are_refused(tmp_path, tiny_model, monkeypatch):
    hf = _claims_huge(save_hf(tiny_model, tmp_path / "hf"))
    _refused(lambda: load_model(hf), "2GB", monkeypatch, str(hf / "config.json"))
    course = _claims_huge(save_course(tiny_model, tmp_path / "course"))
    _refused(lambda: load_model(course), "2GB", monkeypatch, str(course / "config.json"))


def test_course_counts_the_files_tensors_and_the_model(tmp_path, tiny_model, monkeypatch):
    """The course loader holds the file's tensors (weights and masks) and the model's: a limit
    that one dense copy fits but two do not refuses it, naming model_state_dict.pth."""
    from summprune.io.hf import meta_model, model_bytes

    course = save_course(tiny_model, tmp_path / "course")
    one = model_bytes(meta_model(course))
    monkeypatch.setenv(limits.ENV, str(int(2.5 * one)))  # the masks add almost one copy of the weights
    with pytest.raises(limits.MemoryBudgetError, match="model_state_dict.pth.*2 dense copies"):
        load_model(course)
    monkeypatch.setenv(limits.ENV, str(6 * one))
    load_model(course)


def test_a_prune_step_whose_config_claims_a_huge_model_is_refused_before_building_it(tmp_path, tiny_model,
                                                                                      monkeypatch):
    """step.json with vocab_size=1000000, d_model=4096: load_step built 16.4 GB before any check."""
    from safetensors.torch import save_file

    from summprune.checkpoints import STEP_INFO, STEP_STATE, load_step

    latest = tmp_path / "steps" / "latest"
    latest.mkdir(parents=True)
    config = {**tiny_model.config.to_dict(), "vocab_size": 1_000_000, "d_model": 4096}
    (latest / STEP_INFO).write_text(json.dumps({"config": config}))
    save_file({"x": torch.zeros(1)}, str(latest / STEP_STATE))
    built = []
    from summprune.models import Family

    real_build = Family.build
    monkeypatch.setattr(Family, "build", lambda self, c: built.append(str(torch.empty(0).device)) or real_build(self, c))
    msg = _refused(lambda: load_step(tmp_path / "steps", "tied"), "4GB", monkeypatch, str(latest / STEP_INFO),
                   "2 dense copies")
    assert "GB of memory" in msg
    # built on the meta device only (to count it), never on real memory
    assert all(d == "meta" for d in built) and built


def test_a_prune_step_with_a_non_integer_size_is_a_clear_error(tmp_path, tiny_model):
    from safetensors.torch import save_file

    from summprune.checkpoints import STEP_INFO, STEP_STATE, load_step

    latest = tmp_path / "steps" / "latest"
    latest.mkdir(parents=True)
    (latest / STEP_INFO).write_text(json.dumps({"config": {**tiny_model.config.to_dict(), "vocab_size": 100.0}}))
    save_file({"x": torch.zeros(1)}, str(latest / STEP_STATE))
    with pytest.raises(ValueError, match=r"step.json: vocab_size=100.0 is not a positive whole number"):
        load_step(tmp_path / "steps", "tied")


def test_ctranslate2_conversion_counts_the_model_and_its_converted_copy(tiny_dir, tmp_path, monkeypatch):
    pytest.importorskip("ctranslate2")
    from summprune import ct2
    from summprune.io.hf import meta_model, model_bytes

    monkeypatch.setenv("SUMMPRUNE_CACHE", str(tmp_path / "cache"))
    one = model_bytes(meta_model(tiny_dir))
    monkeypatch.setenv(limits.ENV, str(int(1.5 * one)))
    load_model(tiny_dir)  # one copy fits
    with pytest.raises(limits.MemoryBudgetError, match="ctranslate2.*2 dense copies"):
        ct2.convert(tiny_dir)
    assert not list((tmp_path / "cache").rglob("model.bin"))  # nothing converted


@pytest.mark.parametrize("bad", [32128.0, True, "64"])
def test_non_integer_config_sizes_are_one_clear_error(tiny_dir, bad):
    cfg = json.loads((tiny_dir / "config.json").read_text())
    (tiny_dir / "config.json").write_text(json.dumps({**cfg, "vocab_size": bad}))
    with pytest.raises(ValueError, match=rf"config.json: vocab_size={bad!r} is not a positive whole number"):
        load_model(tiny_dir)


# ------------------------------------------------------------------------------------------
# generation


def test_generation_refuses_beams_past_the_budget_before_allocating(tiny_model, monkeypatch):
    from summprune import generate as gen
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    tok = train_tokenizer([r["text"] for r in make_corpus(20)], vocab_size=100)
    called = []
    monkeypatch.setattr(tiny_model, "generate", lambda *a, **k: called.append(1))
    monkeypatch.setenv(limits.ENV, "16GB")  # torch asked for 16.4 GB of a tiny model with a million beams
    with pytest.raises(limits.MemoryBudgetError, match=r"1000000 beam\(s\).*GB of memory"):
        gen.generate_summaries(tiny_model, tok, ["a short bill."], num_beams=1_000_000, progress=False)
    assert not called
    monkeypatch.setenv(limits.ENV, "1kB")
    with pytest.raises(limits.MemoryBudgetError, match=rf"{limits.ENV}=1kB"):
        gen.generate_summaries(tiny_model, tok, ["a short bill."], progress=False)
    assert not called


def test_generation_caps_nothing_silently_past_the_decoder_positions():
    """BART with max_position_embeddings=16: max_length 64 was a raw IndexError."""
    from summprune import generate as gen
    from summprune.modeling import build_tiny_model

    bart = build_tiny_model(vocab_size=100, family="bart", max_positions=16)

    class Tok:  # ids only: what generate_summaries asks of a tokenizer
        pad_token_id = 0

        def __call__(self, texts, **kw):
            return {"input_ids": [[5, 6, 7, 1] for _ in texts]}

        def batch_decode(self, out, **kw):
            return ["x" for _ in out]

    with pytest.raises(ValueError, match=r"max_length=64: the model's decoder has 16 positions"):
        gen.generate_summaries(bart, Tok(), ["doc"], max_length=64, min_new_tokens=40, progress=False)
    assert gen.generate_summaries(bart, Tok(), ["doc"], max_length=16, min_new_tokens=15, progress=False) == {0: "x"}

"""The model card (README.md) every export writes, and ``report`` printing it (tiny models)."""

from __future__ import annotations

import json
import re

import pytest

from summprune import sparsity as S
from summprune.__main__ import main as cli
from summprune.card import CARD, front_matter, model_card
from summprune.export import export_model, load_model
from test_export import pruned_model

FORMATS = [("hf", "fp32"), ("compact", "fp32"), ("compact", "int8"), ("course", "fp32")]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here on one torch thread (conftest.one_thread)."""


def recorded_info(model) -> dict:
    """A pruning.json as a run writes it: ``final`` counted on the masked model."""
    rep = S.report(model)
    return {"final": {k: rep[k] for k in ("mask_ratio", "nonzero_ratio", "nonzero", "dense_params")},
            "recipe": {"tie_mode": "tied", "stages": [{"amounts": {"enc_ffn": 0.5}, "repeat": 2}]},
            "stages": [{"stage": 1, "method": "magnitude"}, {"stage": 2, "method": "magnitude"}]}


def card_ratio(card: str, name: str) -> float:
    m = re.search(rf"^- {name} \([^)]*\): (\d+\.\d{{4}})", card, flags=re.M)
    assert m, f"no {name} line in the card"
    return float(m.group(1))


@pytest.mark.parametrize("fmt,dtype", FORMATS)
def test_every_format_writes_a_card_whose_ratios_are_its_metadata(tmp_path, fmt, dtype):
    model = pruned_model("course")  # the course's tie mode: its ratio differs from the honest one
    out = export_model(model, tmp_path / "m", format=fmt, dtype=dtype, pruning_info=recorded_info(model))
    card = (out / CARD).read_text(encoding="utf-8")
    fm = front_matter(card)
    assert fm["pipeline_tag"] == "summarization" and fm["library_name"] == "transformers"
    assert {"summprune", "pruned", "sparse"} <= set(fm["tags"])
    assert ("int8" in fm["tags"]) == (dtype == "int8")
    assert "structured" not in fm["tags"] and "base_model" not in fm  # neither is true / recorded here
    try:
        import yaml  # not a requirement: where installed, the front matter is YAML to it too
    except ImportError:
        pass
    else:
        assert yaml.safe_load(card.split("---\n")[1]) == fm

    final = json.loads((out / "pruning.json").read_text())["final"]
    assert final["mask_ratio"] != pytest.approx(final["nonzero_ratio"])
    assert card_ratio(card, "mask_ratio") == round(final["mask_ratio"], 4)
    assert card_ratio(card, "nonzero_ratio") == round(final["nonzero_ratio"], 4)
    # the model that comes back from the files computes with that honest ratio
    assert card_ratio(card, "nonzero_ratio") == round(S.nonzero_ratio(load_model(out)), 4)
    # every file written is listed with its size, the card itself excepted
    for f in out.iterdir():
        if f.name != CARD:
            assert f"| {f.name} | {f.stat().st_size:,} |" in card
    assert f"| {CARD} |" not in card
    assert ("AutoModelForSeq2SeqLM" in card) == (fmt != "compact")  # transformers cannot read compact
    assert "load_model" in card and "--engine ctranslate2" in card


def test_a_card_without_quality_records_says_nothing_of_quality_or_speed(tmp_path):
    out = export_model(pruned_model(), tmp_path / "m", format="hf")  # no pruning.json at all
    card = (out / CARD).read_text(encoding="utf-8")
    for word in ("quality", "kaggle", "rouge", "speed", "faster", "latency", "tokens/s"):
        assert word not in card.lower()
    assert "command: not recorded" in card


def test_quality_before_and_after_are_the_runs_records(tmp_path):
    model = pruned_model()
    info = recorded_info(model)
    info["final"].update(kaggle_score=0.2468, rougeLsum=0.2013)
    info["quality"] = {"before": {"kaggle_score": 0.3086, "rougeLsum": 0.2611}, "eval_docs": 6}
    info["base_model"] = "t5-small"
    info["command"] = "python -m summprune run configs/seed.toml"
    out = export_model(model, tmp_path / "m", format="compact", dtype="int8", pruning_info=info)
    card = (out / CARD).read_text(encoding="utf-8")
    assert front_matter(card)["base_model"] == "t5-small"
    assert "| before pruning | 0.3086 | 0.2611 |" in card and "| after pruning | 0.2468 | 0.2013 |" in card
    assert "on 6 validation documents" in card
    assert f"After / before (kaggle_score): {0.2468 / 0.3086:.3f}" in card
    assert "`python -m summprune run configs/seed.toml`" in card
    # a local directory is no hub name: said in the body, not claimed as base_model
    info["base_model"] = str(tmp_path / "finetuned")
    out = export_model(model, tmp_path / "m2", format="hf", pruning_info=info)
    card = (out / CARD).read_text(encoding="utf-8")
    assert "base_model" not in front_matter(card) and f"`{tmp_path / 'finetuned'}`" in card


def test_a_structural_cut_and_another_family(tmp_path):
    from summprune.modeling import build_tiny_model

    model = build_tiny_model(vocab_size=100, family="bart")  # dense, but smaller than its recorded original
    dense = S.dense_param_count(model)
    info = {"original": {"params": 2 * dense}, "structured": {"params_before": 2 * dense}}
    out = export_model(model, tmp_path / "m", format="hf", pruning_info=info)
    card = (out / CARD).read_text(encoding="utf-8")
    tags = front_matter(card)["tags"]
    assert {"pruned", "structured"} <= set(tags) and "sparse" not in tags and "int8" not in tags
    assert "# A compressed bart summarizer" in card
    nonzero = S.nonzero_count(model) / (2 * dense)  # BART's zero biases: a little under 0.5
    assert f"against the original's {2 * dense:,} parameters (pruning.json): parameters 0.5000, non-zero {nonzero:.4f}" in card


def test_report_prints_the_card(tmp_path, capsys):
    out = export_model(pruned_model(), tmp_path / "m", format="compact", dtype="int8",
                       pruning_info=recorded_info(pruned_model()))
    capsys.readouterr()
    assert cli(["report", "--model", str(out)]) == 0
    assert (out / CARD).read_text(encoding="utf-8") in capsys.readouterr().out


def test_report_makes_a_card_where_the_directory_has_none_of_ours(tmp_path, tiny_dir, capsys):
    (tiny_dir / CARD).write_text("# someone else's card\n")  # not summprune's: not vouched for
    assert cli(["report", "--model", str(tiny_dir)]) == 0
    printed = capsys.readouterr().out
    assert "someone else's card" not in printed
    card = printed[printed.index("---\n"):]
    assert front_matter(card)["pipeline_tag"] == "summarization"
    assert card == model_card(load_model(tiny_dir), tiny_dir, "hf", None, None) + "\n"  # print's newline
    assert "pruned" not in front_matter(card)["tags"]  # a dense model is not called pruned


def test_an_export_that_fails_leaves_no_card_behind(tmp_path, monkeypatch):
    import summprune.card as card_mod

    def broken(*a, **k):
        raise RuntimeError("card failed")

    monkeypatch.setattr(card_mod, "model_card", broken)
    with pytest.raises(RuntimeError, match="card failed"):
        export_model(pruned_model(), tmp_path / "m", format="hf")
    assert list(tmp_path.iterdir()) == []  # atomic: the directory appears with its card or not at all


def test_front_matter_parser_refuses_a_card_without_one():
    with pytest.raises(ValueError, match="front matter"):
        front_matter("# a title\n")

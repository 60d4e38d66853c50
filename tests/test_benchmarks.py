"""Each benchmark's smallest configuration, in-process and in seconds, so that none can rot: the
real runs take minutes to hours and stay out of CI. These check that a benchmark runs through
the package's own path and writes its outputs, not its figures."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # structured_speed imports sparsity_quality

TINY_PROXY = ["--proxy-minutes", "0.02", "--train-docs", "40", "--val-docs", "8", "--eval-docs", "4",
              "--d-model", "16", "--layers", "1", "--heads", "2", "--vocab", "300", "--max-source-length", "64",
              "--proxy-eval-every", "5"]


@pytest.fixture(scope="module")
def proxy_dir(tmp_path_factory):
    import sparsity_quality

    d = tmp_path_factory.mktemp("bench")
    assert sparsity_quality.main([*TINY_PROXY, "--proxy-only", "--proxy-dir", str(d / "proxy")]) == 0
    assert (d / "proxy" / "meta.json").is_file()
    return d / "proxy"


def test_sparsity_quality_smallest(tmp_path, proxy_dir):
    import sparsity_quality

    out = tmp_path / "sq"
    argv = [*TINY_PROXY, "--proxy-dir", str(proxy_dir), "--out", str(out), "--targets", "0.5",
            "--methods", "oneshot", "reference", "gradual_kd_auto", "--recovery-steps", "2", "--steps", "2",
            "--levels", "0.5", "0.9"]
    assert sparsity_quality.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["cells"]) == {"oneshot@0.5", "reference@0.5", "gradual_kd_auto@0.5"}
    for key, c in res["cells"].items():
        assert c["nonzero_ratio"] == pytest.approx(0.5, abs=2e-3), key  # the driver hit the target
        assert c["recovery_steps"] == (0 if key.startswith("oneshot") else 2), key
    assert (out / "table.md").is_file() and (out / "pareto.png").is_file()
    assert "dense_ft" in res  # the control ran


def test_structured_speed_smallest(tmp_path, proxy_dir, shared_dir):
    import structured_speed

    out = tmp_path / "ss"
    assert structured_speed.main(["--proxy-dir", str(proxy_dir), "--variants", "ffn50", "--recovery-steps", "2",
                                  "--docs", "2", "--new-tokens", "2", "--reps", "1", "--threads", "1",
                                  "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert "ffn50" in res["quality"]["variants"] and "ffn50" in res["speed"]["variants"]
    assert res["quality"]["variants"]["ffn50"]["plan"]["ffn"]  # the driver's structure plan
    assert (out / "table.md").is_file()


def test_decoding_study_smallest(tmp_path):
    import decoding_study

    out = tmp_path / "dec"
    argv = ["--seeds", "0", "--docs", "3", "--settings", "greedy", "beams2", "--lengths", "12", "--runs",
            str(tmp_path / "runs"), "--results", str(out), "train.epochs=1", "data.synthetic_docs=40",
            "data.val_size=8", "eval.docs=4", "model.tiny_d_model=16", "model.tiny_d_ff=32", "model.tiny_vocab=300",
            "data.max_source_length=64"]
    assert decoding_study.main(argv) == 0
    recs = json.loads((out / "results.json").read_text())["records"]
    assert {(r["setting"], r["max_length"]) for r in recs} == {("greedy", 12), ("beams2", 12)}
    assert (out / "table.md").is_file() and (out / "decoding.png").is_file()
    # resumable: a second run finds every cell done and measures nothing again
    assert decoding_study.main(argv) == 0
    assert len(json.loads((out / "results.json").read_text())["records"]) == 2


def test_generate_speed_smallest(tmp_path):
    """Every row of the generation benchmark (reference at two batch sizes, torch, CTranslate2
    greedy and beams, a structured variant) on a tiny model of the benchmark's own kind."""
    pytest.importorskip("ctranslate2")
    import generate_speed

    from summprune.modeling import build_tiny_model
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    rows = make_corpus(6, seed=2)
    tok = train_tokenizer([r["text"] for r in rows] + [r["summary"] for r in rows], vocab_size=300)
    cfg_dir = tmp_path / "tiny_config"
    build_tiny_model(vocab_size=len(tok), d_model=32, layers=2, heads=4, d_ff=64).config.save_pretrained(cfg_dir)
    tok.save_pretrained(cfg_dir)
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"], "summary": r["summary"]}) + "\n" for r in rows))
    out = tmp_path / "gs.json"
    rc = generate_speed.main(["--data", str(data), "--config-dir", str(cfg_dir), "--docs", "4", "--max-length", "6",
                              "--batch-sizes", "2", "--dtypes", "int8", "--beam-docs", "2", "--threads", "1",
                              "--structured", "2,1,0.5,0.5", "--json", str(out)])
    assert rc == 0  # the exact paths (ours fp32, CTranslate2 fp32 greedy) matched the reference
    runs = json.loads(out.read_text())["runs"]
    assert {"reference (Trainer, bs 2)", "ctranslate2 fp32, bs 2", "ctranslate2 int8 beams4",
            "torch fp32 beams4"} <= set(runs)
    assert runs["ctranslate2 fp32, bs 2"]["identical_to_torch"] == 4
    assert any(k.startswith("ctranslate2 fp32 structured") for k in runs)

"""``summprune plan``: shapes timed on this machine with random weights, the table, the config it
writes (and that ``prune`` runs), the timing cache, the budget and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from summprune import plan as P
from summprune.__main__ import main as cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


@pytest.fixture
def docs(tmp_path):
    """A folder of 6 synthetic bills (text, summary), as every command reads data."""
    from summprune.synthetic import make_corpus

    d = tmp_path / "data"
    d.mkdir()
    with (d / "test.jsonl").open("w") as f:
        for r in make_corpus(6, seed=3):
            f.write(json.dumps({"text": r["text"], "summary": r["summary"]}) + "\n")
    return d


#: a small grid on the tiny model (2+2 blocks, d_ff 64): dense, ffn50, dec1, dec1_ffn50
GRID = ["--decoder-layers", "2,1", "--encoder-layers", "2", "--ffn-keep", "1,0.5", "--heads-keep", "1", "--no-vocab"]
FAST = ["--max-length", "4", "--max-source-length", "48", "--docs", "2", "--no-progress"]


def _sizes(tiny_dir) -> dict[str, float]:
    """MB of weights at fp32 of each cut of GRID, computed as plan computes them."""
    from summprune.io.hf import meta_model_from_config, read_config
    from summprune.models import family_of

    config = read_config(Path(tiny_dir))
    fam = family_of(config)
    dense = P.dense_cut(config, fam)
    out = {}
    for cut in [dense, P.Cut(2, 2, 0.5), P.Cut(2, 1), P.Cut(2, 1, 0.5)]:
        meta = meta_model_from_config(P.candidate_config(config, fam, cut), "x")
        out[cut.name(dense)] = P.weight_bytes(meta, "fp32") / 1e6
    return out


def _plan(tiny_dir, docs, tmp_path, *extra) -> list[str]:
    return ["plan", "--model", str(tiny_dir), "--data", str(docs), "--cache", str(tmp_path / "cache"),
            "--output", str(tmp_path / "plan.toml"), *GRID, *FAST, *extra]


def test_plan_prints_the_table_and_writes_a_config_that_prune_runs(tiny_dir, docs, tmp_path, capsys):
    from summprune.config import load_config

    sizes = _sizes(tiny_dir)
    # between the dense model and ffn50: ffn50 and both dec1 cuts meet it; ffn50 keeps the most
    target = (sizes["dense"] + sizes["ffn50"]) / 2
    assert sizes["dec1"] < target and sizes["dec1_ffn50"] < target
    assert cli(_plan(tiny_dir, docs, tmp_path, "--target", f"size_mb={target}")) == 0
    out = capsys.readouterr().out
    assert "| shape | cut | params (M) | size MB (fp32) | s/doc | busy | speed-up |" in out
    table = {line.split(" | ")[1].replace(" **<- chosen**", ""): line for line in out.splitlines()
             if line.startswith("| 2+")}
    assert set(table) == {"dense", "ffn50", "dec1", "dec1_ffn50"}, out
    assert "**<- chosen**" in table["ffn50"] and "1.00x" in table["dense"]
    assert all(" now |" in line for line in table.values())  # every one timed in this run
    # CPU time / (wall time x threads) of each timing, flagged under 85% (other processes had the core)
    assert all(line.split(" | ")[5].replace(" flagged", "").endswith("%") for line in table.values()), out
    assert all("not measured" in table[n] for n in ("ffn50", "dec1", "dec1_ffn50"))  # nothing on record
    assert "3 new tokens forced" in out  # max_length 4: the start token counts
    # the dense model timed at the start and the end, the faster the reference of every speed-up
    assert "s/doc at the start of this run" in out and "the speed-ups of this run are against the faster" in out

    written = tmp_path / "plan.toml"
    text = written.read_text()
    assert text.startswith("# Written by `summprune plan`") and "python -m summprune plan --model" in text
    cfg = load_config(written)  # what prune's loader reads
    sc = cfg.prune.structured
    assert (sc.encoder_layers, sc.decoder_layers, sc.ffn_keep, sc.heads_keep) == (2, 2, 0.5, 1.0)
    assert cfg.eval.max_length == 4 and cfg.eval.num_beams == 1

    out_model = tmp_path / "pruned"
    assert cli(["prune", "--model", str(tiny_dir), "--config", str(written), "--output", str(out_model),
                "--no-train", "prune.structured.importance=weight"]) == 0
    cut = json.loads((out_model / "config.json").read_text())
    assert (cut["num_layers"], cut["num_decoder_layers"], cut["d_ff"]) == (2, 2, 32)
    # and as written (Taylor importance on training batches, distilled recovery), one step of each
    (docs / "train.jsonl").write_text((docs / "test.jsonl").read_text())
    trained = tmp_path / "trained"
    assert cli(["prune", "--model", str(tiny_dir), "--config", str(written), "--output", str(trained),
                f"data.dataset={docs}", "data.val_size=2", "data.max_source_length=48", "data.max_target_length=8",
                "prune.structured.importance_batches=1", "prune.structured.recover_steps=1", "eval.docs=2"]) == 0
    info = json.loads((trained / "pruning.json").read_text())
    assert info["structured"]["importance"] == "taylor" and json.loads((trained / "config.json").read_text())["d_ff"] == 32


def test_a_rerun_is_served_from_the_cache_and_no_cache_times_again(tiny_dir, docs, tmp_path, capsys, monkeypatch):
    args = _plan(tiny_dir, docs, tmp_path, "--target", "size_mb=1000")
    assert cli(args) == 0
    first = capsys.readouterr().out
    assert len(list((tmp_path / "cache").glob("*.json"))) == 4

    def no_timing(*a, **k):
        raise AssertionError("a cached shape was timed again")

    monkeypatch.setattr(P, "time_config", no_timing)
    assert cli(args) == 0
    again = capsys.readouterr().out
    rows = [line for line in again.splitlines() if line.startswith("| 2+")]
    assert len(rows) == 4 and all("| cached " in line for line in rows), again
    # the same latencies as the run that measured them
    s_per_doc = lambda text: sorted(line.split(" | ")[4:6] for line in text.splitlines() if line.startswith("| 2+"))  # noqa: E731
    assert s_per_doc(first) == s_per_doc(again)

    calls = []
    monkeypatch.setattr(P, "time_config", lambda *a, **k: calls.append(1) or (0.5, 1.0))
    assert cli([*args, "--no-cache"]) == 0
    assert len(calls) >= 4  # every shape (and the dense model once more at the end)
    # a change of setting is another key: nothing served from the cache
    calls.clear()
    assert cli([*args, "--num-beams", "2"]) == 0
    assert len(calls) >= 4


def test_the_budget_stops_new_shapes_and_names_them(tiny_dir, docs, tmp_path, capsys):
    assert cli(_plan(tiny_dir, docs, tmp_path, "--target", "speedup=100", "--budget-s", "0.01")) == 3
    out = capsys.readouterr().out
    assert "not timed (the time budget was spent): 3 shape(s):" in out, out
    assert "no shape timed meets speedup=100: nothing written" in out
    assert not (tmp_path / "plan.toml").exists()


def test_ctranslate2_times_the_cuts_and_a_trimmed_vocabulary(tiny_dir, docs, tmp_path, capsys, monkeypatch):
    pytest.importorskip("ctranslate2")
    from summprune.ct2 import cache_root

    monkeypatch.setenv("SUMMPRUNE_CACHE", str(tmp_path / "pkg-cache"))
    args = ["plan", "--model", str(tiny_dir), "--data", str(docs), "--no-cache", "--output", str(tmp_path / "p.toml"),
            "--engine", "ctranslate2", "--dtype", "int8", "--decoder-layers", "2,1", "--encoder-layers", "2",
            "--ffn-keep", "1", "--heads-keep", "1", "--vocab-size", "90", "--target", "size_mb=1000", *FAST]
    assert cli(args) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[1].replace(" **<- chosen**", ""): line for line in out.splitlines()
            if line.startswith("| 2+")}
    assert set(rows) == {"dense", "dec1", "vocab90", "dec1_vocab90"}, out
    assert all(" now |" in line and "x |" in line for line in rows.values())  # all timed on CTranslate2
    assert "vocab 90" in rows["vocab90"] and "size MB (int8)" in out
    # every cut meets the size: the one keeping every block (its vocabulary trimmed) is chosen
    assert "**<- chosen**" in rows["vocab90"]
    # the conversions of random models are not left in the package's cache
    assert not cache_root().is_dir() or not any(cache_root().iterdir())


def test_the_vocabulary_cut_is_an_export_step_in_the_config(tiny_dir, docs, tmp_path, capsys, monkeypatch):
    from summprune.config import load_config

    # latencies made up so that only the trimmed vocabulary reaches 2x: the choice and the config
    def fake(config, *a, **k):
        return (0.1 if config.vocab_size < 100 else 0.3), 1.0

    monkeypatch.setattr(P, "time_config", fake)
    args = ["plan", "--model", str(tiny_dir), "--data", str(docs), "--no-cache", "--output", str(tmp_path / "v.toml"),
            "--decoder-layers", "2,1", "--encoder-layers", "2", "--ffn-keep", "1", "--heads-keep", "1",
            "--vocab-size", "90", "--target", "speedup=2", *FAST]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "| vocab90 **<- chosen**" in out
    text = (tmp_path / "v.toml").read_text()
    assert "# vocabulary: trim to 90 tokens at export" in text and "vocab_size" not in text.split("#   python")[-1]
    cfg = load_config(tmp_path / "v.toml")
    assert cfg.prune.structured is None  # nothing structural: the vocabulary alone meets it


def test_recorded_quality_reads_the_committed_proxy_pages():
    """The t5-small layout (6+6 blocks, 8 heads) cut 4+3 with half the FFN and heads: the proxy
    measured it (docs/results/structured_1600: 1,600 recovery steps, the longest on record)."""
    dense = P.Cut(6, 6)
    q = P.recorded_quality(ROOT / "docs" / "results", dense, P.Cut(4, 3, 0.5, 0.5))
    assert q is not None and q["kind"] == "proxy" and q["steps"] == 1600 and q["seeds"] == 3
    assert q["page"].endswith("structured_1600") and 99.0 < q["pct"] < 100.5
    assert P.recorded_quality(ROOT / "docs" / "results", dense, P.Cut(6, 6, 0.25, 1.0)) is None
    # another depth than the proxy's: nothing applies
    assert P.recorded_quality(ROOT / "docs" / "results", P.Cut(12, 12), P.Cut(4, 3, 0.5, 0.5)) is None


def test_recorded_quality_prefers_the_yardstick(tmp_path):
    def page(name, kind, steps, score):
        d = tmp_path / name
        d.mkdir()
        recs = [{"variant": "dense_control", "shape": "6+6 L, d_ff 512, 8 h", "kaggle_score": 0.5, "seed": 0},
                {"variant": "dec3", "shape": "6+3 L, d_ff 512, 8 h", "kaggle_score": score, "seed": 0}]
        body = {"quality": {"settings": {"recovery_steps": steps}, "records": recs}}
        if kind:
            body["base"] = {"kind": kind}
        (d / "results.json").write_text(json.dumps(body))

    page("a", None, 1600, 0.5)
    page("b", "yardstick", 100, 0.4)
    q = P.recorded_quality(tmp_path, P.Cut(6, 6), P.Cut(6, 3))
    assert q["kind"] == "yardstick" and q["pct"] == pytest.approx(80.0)


@pytest.mark.parametrize("text,kind,value", [("speedup=3", "speedup", 3.0), ("latency_s=0.25", "latency_s", 0.25),
                                             ("size_mb = 16", "size_mb", 16.0)])
def test_parse_target(text, kind, value):
    assert P.parse_target(text) == (kind, value)


@pytest.mark.parametrize("text", ["speed=3", "speedup", "speedup=abc", "speedup=-1", "size_mb=nan"])
def test_a_target_that_does_not_parse_is_an_error_naming_the_option(text):
    with pytest.raises(P.PlanError, match="--target"):
        P.parse_target(text)


def test_weight_bytes_count_a_tied_embedding_once_and_int8_rows():
    from summprune import sparsity as S
    from summprune.modeling import build_tiny_model

    model = build_tiny_model(vocab_size=200, d_model=64, layers=1, heads=4, d_ff=128)
    fp32 = P.weight_bytes(model, "fp32")
    assert fp32 == 4 * S.dense_param_count(model)  # shared, both embed_tokens and lm_head: one tensor
    int8 = P.weight_bytes(model, "int8")
    # the matrices of 4,096 values or more: 1 byte a value and a 4-byte scale a row instead of 4 a value
    big = [t for n, t in P._unique_tensors(model).items() if t.dim() == 2 and t.numel() >= 4096]
    assert big and fp32 - int8 == sum(3 * t.numel() - 4 * t.shape[0] for t in big)


def test_shapes_an_engine_cannot_load_are_listed_not_timed():
    from summprune.models import family_of

    fam = family_of("t5")
    assert "encoder" in P.why_not_loadable("torch", fam, P.Cut(6, 6), P.Cut(4, 6))
    assert P.why_not_loadable("ctranslate2", fam, P.Cut(6, 6), P.Cut(4, 3, 0.5, 0.5)) is None
    # BART-layout heads are cut (the same count in every attention, what CTranslate2 loads)
    assert P.why_not_loadable("ctranslate2", family_of("bart"), P.Cut(6, 6), P.Cut(6, 3, 1.0, 0.5)) is None


def test_the_trimmed_tokenizer_keeps_the_input_lengths(tiny_dir):
    from summprune.modeling import load_tokenizer

    tok = load_tokenizer(tiny_dir)
    ids = tok(["a bill to amend the code"])["input_ids"][0]
    kept = sorted(set(ids) | {tok.pad_token_id, tok.eos_token_id})
    trimmed = P.TrimmedTokenizer(tok, kept)
    new = trimmed(["a bill to amend the code"])["input_ids"][0]
    assert len(new) == len(ids) and max(new) < len(kept) and trimmed.pad_token_id == kept.index(tok.pad_token_id)


@pytest.mark.parametrize("case", ["no_model", "no_config", "bad_docs", "no_docs", "bad_target", "bad_output",
                                  "bad_vocab"])
def test_bad_input_is_a_clear_error_and_writes_nothing(case, tiny_dir, docs, tmp_path, capsys):
    out = tmp_path / "plan.toml"
    model, data, extra = str(tiny_dir), str(docs), []
    if case == "no_model":
        model, want = str(tmp_path / "missing"), "--model"
    elif case == "no_config":
        (tmp_path / "empty").mkdir()
        model, want = str(tmp_path / "empty"), "no config.json"
    elif case == "bad_docs":
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"text": "ok"}\n{"text": broken\n')
        data, want = str(bad), "line 2"
    elif case == "no_docs":
        data, want = str(tmp_path / "nowhere.jsonl"), "--data"
    elif case == "bad_target":
        extra, want = ["--target", "speedup=fast"], "--target"
    elif case == "bad_output":
        out, want = tmp_path / "no" / "such" / "plan.toml", "--output"
    else:
        extra, want = ["--vocab-size", "5"], "--vocab-size"
    rc = cli(["plan", "--model", model, "--data", data, "--output", str(out), "--no-cache", *GRID[:-1], *FAST,
              *extra])
    err = capsys.readouterr().err
    assert rc == 2 and "summprune plan: error:" in err and want in err, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".plan")]


def test_an_unknown_engine_is_refused_by_name(tiny_dir, docs, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(["plan", "--model", str(tiny_dir), "--data", str(docs), "--engine", "onnx"])
    assert e.value.code == 2 and "--engine" in capsys.readouterr().err


def test_output_lengths_from_the_reference_summaries(tiny_dir, docs, tmp_path, capsys):
    from summprune.modeling import load_tokenizer

    plan = P.run_plan(tiny_dir, data=str(docs), output_lengths="summaries", max_length=6, max_source_length=48,
                      docs=2, decoder_layers=[2], encoder_layers=[2], ffn_keep=[1.0], heads_keep=[1.0], vocab=False,
                      target="size_mb=1000", progress=False, log=lambda m: None)
    tok = load_tokenizer(tiny_dir)
    want = [max(1, min(len(tok(text_target=[t], add_special_tokens=False)["input_ids"][0]), 5))
            for t in _summaries_of(docs, plan["documents"].texts)]
    assert plan["documents"].new_tokens == want
    assert "as many new tokens as each reference summary" in "\n".join(P.summary_lines(plan))
    # without a summary column: the option and the file named
    bare = tmp_path / "bare.jsonl"
    bare.write_text(json.dumps({"text": "a bill"}) + "\n")
    with pytest.raises(P.PlanError, match="--data .*summary"):
        P.run_plan(tiny_dir, data=str(bare), output_lengths="summaries", progress=False, log=lambda m: None)


def _summaries_of(docs: Path, texts: list[str]) -> list[str]:
    rows = [json.loads(line) for line in (docs / "test.jsonl").read_text().splitlines()]
    by_text = {r["text"]: r["summary"] for r in rows}
    return [by_text[t] for t in texts]


def test_the_best_quality_on_record_among_the_cuts_meeting_the_target_is_named(tiny_dir, docs, tmp_path, capsys,
                                                                               monkeypatch):
    # a page that measured the tiny model's depth cut 2+1 (its control 2+2 blocks)
    page = tmp_path / "results" / "structured_x"
    page.mkdir(parents=True)
    recs = [{"variant": "dense_control", "shape": "2+2 L, d_ff 512, 8 h", "kaggle_score": 0.5, "seed": 0},
            {"variant": "dec1", "shape": "2+1 L, d_ff 512, 8 h", "kaggle_score": 0.495, "seed": 0}]
    (page / "results.json").write_text(json.dumps({"quality": {"settings": {"recovery_steps": 400}, "records": recs}}))
    # every cut 3x the dense model: all meet 2x, ffn50 keeps the most parameters
    monkeypatch.setattr(P, "time_config",
                        lambda config, *a, **k: (0.3 if (config.num_decoder_layers, config.d_ff) == (2, 64) else 0.1, 1.0))
    assert cli(_plan(tiny_dir, docs, tmp_path, "--target", "speedup=2", "--results", str(tmp_path / "results"))) == 0
    out = capsys.readouterr().out
    assert "| ffn50 **<- chosen**" in out and "| dec1 | " in out and "proxy 99.0% [1]" in out
    assert ("of the cuts meeting the target, the best quality on record: dec1 (proxy 99.0% of its control); the same "
            "command with --encoder-layers 2 --decoder-layers 1 --ffn-keep 1 --heads-keep 1 --no-vocab") in out
    assert "[1] " + str(page) + ": 1 seed(s), 400 recovery steps" in out


def test_grid_values_out_of_range(tiny_dir, docs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(P, "time_config", lambda *a, **k: (0.1, 1.0))
    args = ["plan", "--model", str(tiny_dir), "--data", str(docs), "--no-cache", "--output", str(tmp_path / "g.toml"),
            "--heads-keep", "1", "--no-vocab", "--target", "size_mb=1000", *FAST]
    assert cli([*args, "--decoder-layers", "1", "--encoder-layers", "2,5", "--ffn-keep", "1"]) == 0
    assert "blocks outside 1..2 (encoder) / 1..2 (decoder)" in capsys.readouterr().out
    assert cli([*args, "--decoder-layers", "2", "--encoder-layers", "2", "--ffn-keep", "1.5"]) == 2
    assert "--ffn-keep / --heads-keep: ffn_keep=1.5" in capsys.readouterr().err

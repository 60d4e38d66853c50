"""Each benchmark's smallest configuration, in-process and in seconds, so that none can rot: the
real runs take minutes to hours and stay out of CI. These check that a benchmark runs through
the package's own path and writes its outputs, not its figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import grid and proxy

TINY_PROXY = ["--minutes", "0.05", "--train-docs", "60", "--val-docs", "8", "--eval-docs", "6", "--d-model", "16",
              "--layers", "1", "--heads", "2", "--vocab", "300", "--max-source-length", "64", "--eval-every", "4",
              "--threads", "1"]


@pytest.fixture(scope="module")
def proxy_dir(tmp_path_factory):
    import proxy

    d = tmp_path_factory.mktemp("bench")
    assert proxy.main([*TINY_PROXY, "--out", str(d / "proxy"), "--work", str(d / "work")]) == 0
    meta = json.loads((d / "proxy" / "proxy.json").read_text())
    assert meta["difficulty"] == "copy" and meta["max_source_length"] == 64
    v = meta["validity"]
    assert {"own_kaggle", "swapped_kaggle", "swapped_over_own", "title_rate", "act_rate", "passes"} <= set(v)
    assert 0.1 < v["reference_swapped_kaggle"] < 0.5  # the corpus: template words only
    return d / "proxy"


def test_proxy_resumes_and_checks(proxy_dir, tmp_path):
    """The stored proxy loads (compact fp16) and --check-only recomputes its checks; a training
    run that finds its checkpoint goes on from it."""
    import proxy

    rc = proxy.main(["--out", str(proxy_dir), "--check-only"])
    assert rc == 1  # a 1-block, 16-wide proxy trained for 3 s does not read: the checks say so
    work = tmp_path / "work"
    argv = [*TINY_PROXY, "--minutes", "0.02", "--out", str(tmp_path / "p"), "--work", str(work)]
    assert proxy.main(argv) == 0
    steps = json.loads((work / "state.json").read_text())["step"]
    assert proxy.main(argv) == 0  # budget spent: resumes, evaluates once more, rewrites the proxy
    assert json.loads((work / "state.json").read_text())["step"] == steps + 1
    page = tmp_path / "p" / "README.md"
    assert "| the bill's exact title copied |" in page.read_text()  # the results page beside the proxy
    page.unlink()
    assert proxy.main(["--out", str(tmp_path / "p"), "--page-only"]) == 0 and page.is_file()


def test_proxy_curriculum_stages(tmp_path):
    """The curriculum runs and is counted: name-copy batches (their targets are their inputs
    without the prefix), all of them during the warm-up."""
    import random

    import proxy
    from transformers import DataCollatorForSeq2Seq

    work = tmp_path / "work"
    argv = [*TINY_PROXY, "--minutes", "0.03", "--names-warmup", "1", "--out", str(tmp_path / "p"), "--work", str(work)]
    assert proxy.main(argv) == 0
    state = json.loads((work / "state.json").read_text())
    # the whole budget is warm-up: every step but one at the budget's end (frac = 1) copies names
    assert state["names_batches"] > 0 and state["step"] - state["names_batches"] <= 1
    assert state["settings"]["train"]["names"] == {"warmup": 1.0, "frac": 0.2, "until": 1.0, "items": 8}
    meta = json.loads((tmp_path / "p" / "proxy.json").read_text())
    assert meta["train"]["names"]["warmup"] == 1.0

    from summprune.modeling import load_tokenizer

    tok = load_tokenizer(work / "tokenizer")
    batch = proxy._names_batch(tok, DataCollatorForSeq2Seq(tok, label_pad_token_id=-100), 4, 6, random.Random(0))
    for ids, lab in zip(batch["input_ids"], batch["labels"]):
        src = tok.decode(ids, skip_special_tokens=True)
        tgt = tok.decode([t for t in lab.tolist() if t != -100], skip_special_tokens=True)
        assert src == proxy.COPY_PREFIX + tgt and 3 <= len(tgt.split()) <= 6


def test_copy_rates():
    import proxy

    rows = [{"title": "Foo Bar Act of 2020", "summary": "Foo Bar Act of 2020 - Amends the Baz Qux Act to fund."},
            {"title": "Zed Act of 2021", "summary": "Zed Act of 2021 - Authorizes $5 million."}]
    r = proxy.copy_rates(["Foo Bar Act of 2020 - Amends the Baz Qux Act.", "Zed Act of 2020"], rows)
    assert r == {"title_rate": 0.5, "act_rate": 1.0, "act_docs": 1}


def test_sparsity_quality_smallest(tmp_path, proxy_dir):
    import sparsity_quality

    out = tmp_path / "sq"
    argv = ["--proxy", str(proxy_dir), "--out", str(out), "--work", str(tmp_path / "w"), "--targets", "0.5",
            "--methods", "reference", "gradual_kd_wanda", "gradual_kd_obs", "oneshot", "--seeds", "0", "1",
            "--recovery-steps", "2",
            "--steps", "2", "--eval-docs", "3", "--recovery-docs", "30", "--threads", "1"]
    assert sparsity_quality.main(argv) == 0
    recs = json.loads((out / "results.json").read_text())["records"]
    methods = ("dense_control", "reference", "gradual_kd_wanda", "gradual_kd_obs", "oneshot")
    assert {(r["method"], r["seed"]) for r in recs} == {(m, s) for m in methods for s in (0, 1)}
    for r in recs:
        assert {"method", "target", "seed", "recovery_steps", "kaggle_score", "rougeLsum"} <= set(r)
        assert r["recovery_steps"] == r["recovery_steps_done"] == 2, r["method"]  # the same budget for all
        if r["method"] != "dense_control":
            assert r["nonzero_ratio"] == pytest.approx(0.5, abs=2e-3), r["method"]  # the driver hit the target
    assert (out / "table.md").is_file() and (out / "pareto.png").is_file()
    assert "gradual cubic, uniform, OBS" in (out / "README.md").read_text()
    data = json.loads((out / "results.json").read_text())  # the proxy by its full hash, what each command ran on
    assert len(data["proxy"]["sha256"]) == 64 and data["proxy"]["sha256"].startswith(data["settings"]["proxy_sha256"])
    assert data["versions_by_command"][data["commands"][0]]["torch"]
    # resumable: a second run finds every record and trains nothing
    assert sparsity_quality.main(argv) == 0
    assert len(json.loads((out / "results.json").read_text())["records"]) == 10


def test_sparsity_quality_budget_axis_merges_parts(tmp_path, proxy_dir):
    """A grid split over processes: each part has its own --out; --merge joins them (same settings
    only, a cell measured twice with different results refused) and draws the budget axis."""
    import sparsity_quality

    base = ["--proxy", str(proxy_dir), "--targets", "0.5", "--methods", "oneshot", "--seeds", "0", "1",
            "--eval-docs", "2", "--recovery-docs", "20", "--threads", "1", "--work", str(tmp_path / "w")]
    a, b = tmp_path / "a", tmp_path / "b"
    assert sparsity_quality.main([*base, "--recovery-steps", "1", "--out", str(a)]) == 0
    assert sparsity_quality.main([*base, "--recovery-steps", "2", "--out", str(b)]) == 0
    assert not (a / "budget.png").exists()  # one budget: no axis
    part_b = json.loads((b / "results.json").read_text())

    other = tmp_path / "other.json"  # another setting (eval docs): refused, and a's store is kept
    other.write_text(json.dumps({**part_b, "settings": {**part_b["settings"], "eval_docs": 3}}))
    with pytest.raises(SystemExit, match="other settings"):
        sparsity_quality.main([*base, "--out", str(a), "--merge", str(other)])
    with pytest.raises(SystemExit, match="other settings"):  # options that do not match a's store: a is not set aside
        sparsity_quality.main([*base, "--eval-docs", "1", "--out", str(a), "--merge", str(b / "results.json")])
    assert len(json.loads((a / "results.json").read_text())["records"]) == 4

    assert sparsity_quality.main([*base, "--out", str(a), "--merge", str(b / "results.json")]) == 0
    recs = json.loads((a / "results.json").read_text())["records"]
    assert sorted((r["method"], r["recovery_steps"]) for r in recs) == sorted(
        [(m, n) for m in ("dense_control", "oneshot") for n in (1, 2)] * 2)
    assert (a / "budget.png").is_file() and "Recovery-budget axis" in (a / "table.md").read_text()
    page = (a / "README.md").read_text()  # the page names both parts' commands, not the merge
    assert all(f"--recovery-steps {n} --out {d}" in page for n, d in ((1, a), (2, b))) and "--merge" not in page
    assert set(json.loads((a / "results.json").read_text())["versions_by_command"]) >= {
        c for c in json.loads((a / "results.json").read_text())["commands"]}  # the part's versions came with it
    # merging again adds nothing; a different result for a cell already there is refused
    assert sparsity_quality.main([*base, "--out", str(a), "--merge", str(b / "results.json")]) == 0
    assert len(json.loads((a / "results.json").read_text())["records"]) == 8
    part_b["records"][0]["kaggle_score"] += 0.5
    other.write_text(json.dumps(part_b))
    with pytest.raises(SystemExit, match="different records"):
        sparsity_quality.main([*base, "--out", str(a), "--merge", str(other)])


def test_structured_speed_smallest(tmp_path, proxy_dir, shared_dir):
    import structured_speed

    out = tmp_path / "ss"
    assert structured_speed.main(["--proxy", str(proxy_dir), "--variants", "ffn50", "--quality-variants", "ffn50", "--recovery-steps", "2",
                                  "--docs", "2", "--new-tokens", "2", "--reps", "1", "--threads", "1",
                                  "--seeds", "0", "--eval-docs", "3", "--recovery-docs", "30", "--work", str(tmp_path / "w"),
                                  "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    recs = res["quality"]["records"]
    assert {r["variant"] for r in recs} == {"dense_control", "ffn50"}
    assert all(r["recovery_steps"] == 2 for r in recs)
    assert next(r for r in recs if r["variant"] == "ffn50")["plan"]["ffn"]  # the driver's structure plan
    assert "ffn50" in res["speed"]["variants"]
    assert len(res["proxy"]["sha256"]) == 64 and res["versions_by_command"]
    assert (out / "table.md").is_file()
    page = (out / "README.md").read_text()
    assert "python benchmarks/structured_speed.py" in page and "| ffn50 |" in page

    # a second run that keeps the first blocks reuses the control (nothing is cut from it) but trains
    # its own variant; a run with other recovery settings refuses the file
    base = ["--proxy", str(proxy_dir), "--skip-speed", "--recovery-steps", "2", "--seeds", "0", "--eval-docs", "3",
            "--recovery-docs", "30", "--threads", "1", "--work", str(tmp_path / "w")]
    out2 = tmp_path / "first"
    assert structured_speed.main([*base, "--quality-variants", "ffn50", "--layer-selection", "first", "--no-control",
                                  "--reuse", str(out / "results.json"), "--out", str(out2)]) == 0
    res2 = json.loads((out2 / "results.json").read_text())["quality"]
    assert res2["settings"]["layer_selection"] == "first"
    ctrl = [r for r in res2["records"] if r["variant"] == "dense_control"]
    assert len(ctrl) == 1 and ctrl[0]["copied_from"] == str(out / "results.json")
    assert ctrl[0]["kaggle_score"] == next(r for r in recs if r["variant"] == "dense_control")["kaggle_score"]
    own = next(r for r in res2["records"] if r["variant"] == "ffn50")
    assert "copied_from" not in own and own["plan"]["ffn"]
    assert "copied from" in (out2 / "README.md").read_text()
    with pytest.raises(SystemExit, match="other settings"):
        structured_speed.main([*base[:4], "3", *base[5:], "--quality-variants", "ffn50", "--no-control",
                               "--reuse", str(out / "results.json"), "--out", str(tmp_path / "other")])

    # --trim-vocab scores each recovered variant again, trimmed to its training rows' tokens; the
    # control (nothing trimmed) is still reused
    out3 = tmp_path / "trim"
    assert structured_speed.main([*base, "--quality-variants", "ffn50", "--no-control", "--trim-vocab",
                                  "--reuse", str(out / "results.json"), "--out", str(out3)]) == 0
    res3 = json.loads((out3 / "results.json").read_text())["quality"]
    assert res3["settings"]["trim_vocab"] is True
    tr = next(r for r in res3["records"] if r["variant"] == "ffn50")["trimmed"]
    assert tr["vocab_size"] < tr["original_vocab_size"] and tr["params"] < own["params"]
    assert 0 <= tr["kaggle_score"] <= 1 and tr["unknown_tokens"] >= 0
    assert "vocabulary trimmed to the tokens" in (out3 / "README.md").read_text()


TINY_YARDSTICK = ["--distributions", "tqdm", "--stdlib", "json", "argparse", "textwrap", "string", "csv", "shlex",
                  "--vocab", "400", "--d-model", "16", "--layers", "2", "--heads", "2", "--d-ff", "32",
                  "--pretrain-steps", "2", "--pretrain-batch", "4", "--pretrain-length", "32", "--finetune-steps", "2",
                  "--batch-size", "4", "--warmup", "2", "--seeds", "0", "--no-scratch", "--val-docs", "2",
                  "--eval-docs", "6", "--max-source-length", "48", "--threads", "1"]


@pytest.fixture(scope="module")
def yardstick_dir(tmp_path_factory):
    """A tiny yardstick (2+2 blocks, so structured cuts to 1 block exist) and the corpus it was
    fine-tuned on (``work/corpus``): what ``--base``/``--corpus`` point the benchmarks at."""
    import yardstick

    d = tmp_path_factory.mktemp("ys")
    assert yardstick.main([*TINY_YARDSTICK, "--out", str(d / "yardstick"), "--work", str(d / "work")]) == 0
    return d / "yardstick", d / "work" / "corpus"


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_base_reads_the_yardstick_and_refuses_another_corpus(tmp_path, yardstick_dir, proxy_dir):
    import shutil

    import grid

    ys, corpus = yardstick_dir
    meta = json.loads((ys / "yardstick.json").read_text())
    _, _, m, data = grid.load_base(ys, corpus)
    assert m["kind"] == "yardstick" and m["prefix"] == meta["prefix"] and m["steps"] == meta["finetune"]["steps"]
    assert m["sha256_full"] == _sha256(ys / "compact.safetensors") and m["max_source_length"] == 48
    test = [json.loads(x) for x in (ys / "test.jsonl").read_text().splitlines()]
    assert data["eval"] == test[:meta["eval_docs"]] and data["train"] and "title" not in data["eval"][0]
    assert grid.load_base(proxy_dir)[2]["kind"] == "proxy"
    # a yardstick run's results go beside the proxy's, never over them
    assert grid.default_out("sparsity_quality", ys) == ROOT / "docs" / "results" / "sparsity_quality_yardstick"
    assert grid.default_out("sparsity_quality", proxy_dir) == ROOT / "docs" / "results" / "sparsity_quality"
    # a corpus that is not the one the yardstick was fine-tuned on is refused, naming both hashes
    other = tmp_path / "other"
    shutil.copytree(ys, other)
    meta["corpus"]["content_hash"] = "0" * 64
    (other / "yardstick.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="not the one the yardstick was fine-tuned on: content_hash .* != 000000000000"):
        grid.load_base(other, corpus)
    meta["corpus"]["content_hash"] = json.loads((ys / "yardstick.json").read_text())["corpus"]["content_hash"]
    (other / "yardstick.json").write_text(json.dumps(meta))
    rows = (other / "test.jsonl").read_text().splitlines()
    (other / "test.jsonl").write_text("\n".join(rows[:1] + [rows[2], rows[1]] + rows[3:]) + "\n")
    with pytest.raises(SystemExit, match="test.jsonl: row 2 is not the corpus's held-out pair"):
        grid.load_base(other, corpus)
    with pytest.raises(SystemExit, match="not a base model directory"):
        grid.load_base(tmp_path)


def test_yardstick_corpus_is_rebuilt_from_the_recorded_distributions(tmp_path):
    """Without a corpus folder the corpus is rebuilt from the distributions yardstick.json records
    and saved whole; one of another content_hash is refused and nothing is saved."""
    import grid

    from summprune.corpus import build_corpus

    want = build_corpus(["tqdm"], stdlib=False)
    recorded = {"content_hash": want["content_hash"], "versions": want["versions"]}
    got = grid.yardstick_data(recorded, tmp_path / "c")
    assert got["content_hash"] == want["content_hash"] and (tmp_path / "c" / "corpus.json").is_file()
    assert grid.yardstick_data(recorded, tmp_path / "c")["train"] == want["train"]  # read back, not rebuilt
    with pytest.raises(SystemExit, match="rebuilt from this install is not the one"):
        grid.yardstick_data({**recorded, "content_hash": "f" * 64}, tmp_path / "d")
    with pytest.raises(SystemExit, match="no-such-distribution.* not installed here"):
        grid.yardstick_data({**recorded, "versions": {"no-such-distribution": "1.0"}}, tmp_path / "e")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # nothing half-written


def test_sparsity_quality_on_the_yardstick(tmp_path, yardstick_dir):
    """The same grid on the yardstick: its corpus trains, its test.jsonl scores, and the results
    and page name it (kind, sha256), with no proxy-only copy rates."""
    import sparsity_quality

    ys, corpus = yardstick_dir
    out = tmp_path / "sq"
    argv = ["--base", str(ys), "--corpus", str(corpus), "--out", str(out), "--work", str(tmp_path / "w"),
            "--targets", "0.5", "--methods", "reference", "gradual_kd_obs", "--seeds", "0", "--recovery-steps", "2",
            "--steps", "2", "--eval-docs", "3", "--recovery-docs", "30", "--threads", "1"]
    assert sparsity_quality.main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    sha = _sha256(ys / "compact.safetensors")
    assert data["base"]["kind"] == "yardstick" and data["base"]["sha256"] == sha and "proxy" not in data
    assert data["settings"]["yardstick_sha256"] == sha[:16] and "proxy_sha256" not in data["settings"]
    assert data["base"]["corpus_sha256"] == json.loads((ys / "yardstick.json").read_text())["corpus"]["content_hash"]
    recs = data["records"]
    assert {r["method"] for r in recs} == {"dense_control", "reference", "gradual_kd_obs"}
    assert all(r["recovery_steps_done"] == 2 and "title_rate" not in r for r in recs)
    page = (out / "README.md").read_text()
    assert "Quality against honest sparsity on the yardstick" in page and sha[:16] in page
    assert "proxy" not in page.split("Command:")[1]  # (the command line names the yardstick's directory)
    assert "title copied" not in (out / "table.md").read_text()
    assert sparsity_quality.main(argv) == 0  # resumable on the yardstick too: nothing measured again
    assert len(json.loads((out / "results.json").read_text())["records"]) == 3


def test_sparsity_quality_on_the_yardstick_in_two_processes(tmp_path, yardstick_dir):
    """The split a long yardstick grid uses: one part trains the controls and some cells, the other
    (--no-control) the rest; --merge joins them into one page."""
    import sparsity_quality

    ys, corpus = yardstick_dir
    base = ["--base", str(ys), "--corpus", str(corpus), "--work", str(tmp_path / "w"), "--seeds", "0", "1",
            "--recovery-steps", "1", "--eval-docs", "2", "--recovery-docs", "20", "--threads", "1"]
    a, b, joined = tmp_path / "a", tmp_path / "b", tmp_path / "joined"
    assert sparsity_quality.main([*base, "--targets", "0.5", "--methods", "oneshot", "--out", str(a)]) == 0
    assert sparsity_quality.main([*base, "--targets", "0.4", "--methods", "oneshot", "--no-control", "--out", str(b)]) == 0
    assert {r["method"] for r in json.loads((b / "results.json").read_text())["records"]} == {"oneshot"}
    assert sparsity_quality.main([*base, "--out", str(joined), "--merge", str(a / "results.json"),
                                  str(b / "results.json")]) == 0
    data = json.loads((joined / "results.json").read_text())
    assert sorted((r["method"], r["target"], r["seed"]) for r in data["records"]) == sorted(
        [("dense_control", 1.0, s) for s in (0, 1)] + [("oneshot", t, s) for t in (0.5, 0.4) for s in (0, 1)])
    assert data["base"]["kind"] == "yardstick" and "on the yardstick" in (joined / "README.md").read_text()


def test_the_prefix_and_lengths_come_from_the_base(tmp_path, yardstick_dir, monkeypatch):
    """Recovery data and generation use the prefix and lengths yardstick.json records, not the
    proxy's: a yardstick that says "digest: " is trained and scored with "digest: "."""
    import shutil

    import sparsity_quality
    import summprune.data
    import summprune.generate

    ys, corpus = yardstick_dir
    other = tmp_path / "ys"
    shutil.copytree(ys, other)
    meta = json.loads((ys / "yardstick.json").read_text())
    (other / "yardstick.json").write_text(json.dumps({**meta, "prefix": "digest: "}))
    seen = []
    tokenize, generate = summprune.data.tokenize, summprune.generate.generate_summaries

    def spy_tokenize(ds, tok, prefix, max_source_length, max_target_length, *a, **k):
        seen.append(("tokenize", prefix, max_source_length, max_target_length))
        return tokenize(ds, tok, prefix, max_source_length, max_target_length, *a, **k)

    def spy_generate(*a, **k):
        seen.append(("generate", k["prefix"], k["max_source_length"], None))
        return generate(*a, **k)

    monkeypatch.setattr(summprune.data, "tokenize", spy_tokenize)
    monkeypatch.setattr(summprune.generate, "generate_summaries", spy_generate)
    assert sparsity_quality.main(["--base", str(other), "--corpus", str(corpus), "--out", str(tmp_path / "sq"),
                                  "--work", str(tmp_path / "w"), "--targets", "0.5", "--methods", "oneshot",
                                  "--seeds", "0", "--recovery-steps", "1", "--eval-docs", "2",
                                  "--recovery-docs", "10", "--threads", "1"]) == 0
    assert {w for w, *_ in seen} == {"tokenize", "generate"}
    assert all(p == "digest: " and msl == meta["max_source_length"] for _, p, msl, _ in seen), seen
    assert all(mtl == meta["max_target_length"] for w, _, _, mtl in seen if w == "tokenize")


def test_structured_speed_on_the_yardstick(tmp_path, yardstick_dir):
    """6+3 and 4+3 half-width cut from the (2+2-block) yardstick: depth scaled to 2+1 and 1+1."""
    import structured_speed

    ys, corpus = yardstick_dir
    out = tmp_path / "ss"
    assert structured_speed.main(["--base", str(ys), "--corpus", str(corpus), "--skip-speed", "--quality-variants",
                                  "dec3_ffn50_heads50", "enc4_dec3_ffn50_heads50", "--recovery-steps", "2",
                                  "--seeds", "0", "--eval-docs", "3", "--recovery-docs", "30", "--threads", "1",
                                  "--work", str(tmp_path / "w"), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    sha = _sha256(ys / "compact.safetensors")
    assert res["base"]["kind"] == "yardstick" and res["base"]["sha256"] == sha and "proxy" not in res
    q = res["quality"]
    assert q["settings"]["yardstick_sha256"] == sha[:16] and "proxy_sha256" not in q["settings"]
    shapes = {r["variant"]: r["shape"] for r in q["records"]}
    assert shapes == {"dense_control": "2+2 L, d_ff 32, 2 h", "dec3_ffn50_heads50": "2+1 L, d_ff 16, 1 h",
                      "enc4_dec3_ffn50_heads50": "1+1 L, d_ff 16, 1 h"}
    assert all("title_rate" not in r for r in q["records"])
    page = (out / "README.md").read_text()
    assert "CPU generation speed and yardstick quality" in page and "| yardstick course, recovered |" in page
    assert "the yardstick of" in page and "proxy" not in page.split("Command:")[1]


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
    assert "| beams2 | 12 |" in (out / "README.md").read_text()  # the results page
    (out / "README.md").unlink()
    assert decoding_study.main(["--results", str(out), "--page-only"]) == 0 and (out / "README.md").is_file()
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
                              "--structured", "2,1,0.5,0.5", "1,1,1,1", "--json", str(out)])
    assert rc == 0  # the exact paths (ours fp32, CTranslate2 fp32 greedy) matched the reference
    runs = json.loads(out.read_text())["runs"]
    assert {"reference (Trainer, bs 2)", "ctranslate2 fp32, bs 2", "ctranslate2 int8 beams4",
            "torch fp32 beams4"} <= set(runs)
    assert runs["ctranslate2 fp32, bs 2"]["identical_to_torch"] == 4
    assert any(k.startswith("ctranslate2 fp32 structured") for k in runs)
    # every structured shape also through beams, and against the dense model on its own engine
    beams = [k for k, r in runs.items() if r["group"] == "structured beams"]
    assert len(beams) == 2 * 3, beams  # two shapes x (torch, CTranslate2 fp32, int8)
    assert all(runs[k]["speedup_vs_dense_same_engine"] > 0 for k in beams if k.startswith("ctranslate2"))
    report = json.loads(out.read_text())
    assert all(0 < r["cpu_busy"] for r in runs.values())  # each row's CPU use is kept, not only printed
    assert {k for k, r in runs.items() if r["cpu_busy"] < generate_speed.BUSY_FLOOR} <= set(report["flagged_busy"])
    assert all(runs[k]["cpu_busy"] < generate_speed.BUSY_FLOOR for k in report["flagged_busy"] if k in runs)
    assert report["versions"]["torch"]
    page = (tmp_path / "README.md").read_text()
    assert "| ctranslate2 int8 beams4 | beams |" in page and "--json" in page
    assert "new tokens (forced) 5" in page and "output.txt" not in page  # no console output kept here


def test_generate_speed_page_carries_the_runs_flags(tmp_path):
    """A row the run flagged as disturbed says so on the page; output.txt is cited only where it exists."""
    import generate_speed

    row = {"group": "greedy", "s_per_doc": 1.0, "speedup_vs_torch": 1.0, "identical_to_torch": 2, "docs": 2}
    report = {"docs": 2, "threads": 2, "batch_size": 2, "max_length": 128, "flagged_busy": ["ctranslate2 int8, bs 2"],
              "runs": {"ours fp32, bs 2": {**row, "cpu_busy": 0.97}, "ctranslate2 int8, bs 2": {**row, "cpu_busy": 0.7},
                       "ctranslate2 fp32, bs 2": row}}
    page = generate_speed.write_page(report, tmp_path).read_text()
    assert "| 97% |" in page and "| 70% **flagged** |" in page and "| not recorded |" in page
    assert "**Flagged** (1 rows)" in page and "new tokens (forced) 127" in page and "output.txt" not in page
    (tmp_path / "output.txt").write_text("console\n")
    assert "output.txt is the console output" in generate_speed.write_page(report, tmp_path).read_text()


def test_obs_step_smallest(tmp_path, shared_dir):
    """One OBS step, before (float64, CPU, per module) and after (the defaults), on the tiny
    shape with t5-small's tokenizer and the real bills: both sides timed and compared."""
    import obs_step

    if not (shared_dir / "billsum" / "us_test_sample.jsonl").is_file():
        pytest.skip("../shared/billsum/us_test_sample.jsonl not present")
    out = tmp_path / "obs"
    assert obs_step.main(["--tiny", "--batches", "1", "--batch-size", "2", "--max-source-length", "32",
                          "--config-dir", str(shared_dir / "t5-small"),
                          "--data", str(shared_dir / "billsum" / "us_test_sample.jsonl"), "--threads", "1",
                          "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    for side in ("before", "after"):
        assert {"hessian_seconds", "solve_seconds", "total_seconds", "hessians", "solves", "modules"} <= set(res[side])
    assert res["before"]["settings"]["hessian_dtype"] == "float64" and not res["before"]["settings"]["share_inputs"]
    assert res["after"]["hessians"] < res["after"]["modules"] == res["before"]["hessians"]  # shared inputs found
    assert res["agreement"]["identical_mask_entries"] > 0.999
    page = (out / "README.md").read_text()
    assert "before (float64, CPU, per module)" in page and "after (defaults)" in page


def test_int8_quality_on_the_yardstick(tmp_path, yardstick_dir):
    import int8_quality

    ys, corpus = yardstick_dir
    out = tmp_path / "i8"
    assert int8_quality.main(["--base", str(ys), "--corpus", str(corpus), "--out", str(out), "--work",
                              str(tmp_path / "w"), "--targets", "0.5", "--seeds", "0", "--recovery-steps", "2",
                              "--steps", "2", "--eval-docs", "3", "--recovery-docs", "30", "--threads", "1"]) == 0
    data = json.loads((out / "results.json").read_text())
    sha = _sha256(ys / "compact.safetensors")
    assert data["base"]["kind"] == "yardstick" and data["base"]["sha256"] == sha and "proxy" not in data
    assert data["settings"]["yardstick_sha256"] == sha[:16]
    page = (out / "README.md").read_text()
    assert "What int8 values cost on the yardstick" in page and "synthetic proxy" not in page


def test_int8_quality_smallest(tmp_path, proxy_dir):
    """fp16 and int8 exports of the same pruned proxy, each loaded back and scored; resumable."""
    import int8_quality

    out = tmp_path / "i8"
    argv = ["--proxy", str(proxy_dir), "--out", str(out), "--work", str(tmp_path / "w"), "--targets", "0.5",
            "--seeds", "0", "--recovery-steps", "2", "--steps", "2", "--eval-docs", "3", "--recovery-docs", "30",
            "--threads", "1"]
    assert int8_quality.main(argv) == 0
    recs = json.loads((out / "results.json").read_text())["records"]
    assert len(recs) == 1
    r = recs[0]
    assert r["fp16"]["nonzero_ratio"] == r["int8"]["nonzero_ratio"] == pytest.approx(0.5, abs=2e-3)
    # (this proxy's matrices are below int8's 4,096-element minimum except the embedding: no size claim)
    assert r["int8"]["bytes"] > 0 and r["fp16"]["bytes"] > 0 and 0 <= r["identical"] <= 1
    data = json.loads((out / "results.json").read_text())
    assert len(data["proxy"]["sha256"]) == 64 and data["versions"]["torch"]
    page = (out / "README.md").read_text()
    assert "| 0.5 | 0 |" in page and "**Magnitude** importance" in page  # says which importance was measured
    (out / "README.md").unlink()
    assert int8_quality.main([*argv, "--page-only"]) == 0 and (out / "README.md").read_text() == page
    assert int8_quality.main(argv) == 0  # every record found: nothing pruned again
    assert len(json.loads((out / "results.json").read_text())["records"]) == 1


def test_checkpoint_size_smallest(tmp_path):
    """Every format and dtype of a tiny model pruned by a recipe and to an honest target, each
    reloaded and checked; the results page is written."""
    import checkpoint_size

    from summprune.modeling import build_tiny_model

    cfg_dir = tmp_path / "cfg"
    build_tiny_model(vocab_size=100).config.save_pretrained(str(cfg_dir))
    out = tmp_path / "cs" / "results.json"
    res = checkpoint_size.main(["--config-dir", str(cfg_dir), "--recipe", str(ROOT / "configs" / "smoke.toml"),
                                "--targets", "0.3", "--threads", "1", "--json", str(out), "--tmp-dir", str(tmp_path)])
    t = res["targets"]["0.3"]
    assert t["sizes"]["compact-int8"]["check"].startswith("exact zeros, within")
    assert t["sizes"]["compact-int8"]["bytes"] < t["sizes"]["compact-fp16"]["bytes"] < t["sizes"]["compact-fp32"]["bytes"]
    assert {"fp16+mask", "int8+entropy-mask", "dense-int8"} <= set(t["limits"])
    assert t["density"] == pytest.approx(0.3, abs=0.01)
    assert json.loads(out.read_text())["versions"]["torch"]
    page = (out.parent / "README.md").read_text()
    assert "Honest non-zero ratio 0.3" in page and "compact-int8" in page
    # the page says which sizes depend on the density alone, and which (lzma-coded) on more
    assert "not on the values" not in page and "depend on the pattern's layout and the values too" in page
    (out.parent / "README.md").unlink()
    assert checkpoint_size.main(["--page-only", "--json", str(out)]) == json.loads(out.read_text())  # measures nothing
    assert (out.parent / "README.md").read_text() == page


def test_score_speed_smallest(tmp_path):
    import score_speed

    out = tmp_path / "ss"
    assert score_speed.main(["--docs", "20", "--rouge", "--out", str(out)]) == 0  # ours agrees with the reference
    res = json.loads((out / "results.json").read_text())
    assert res["docs"] == 20 and res["difference"] <= 1e-9 and "rouge_seconds" in res
    assert "Speed-up of ours over the reference" in (out / "README.md").read_text()


def test_family_shapes_smallest(tmp_path, shared_dir):
    """Both families through the CLI's prune --no-train to an honest 0.30 and generate_csv.py with
    both engines, at the test's size: the rows of docs/results/family_shapes, and their page."""
    pytest.importorskip("ctranslate2")
    import family_shapes

    out = tmp_path / "fs" / "results.json"
    assert family_shapes.main(["--tiny", "--docs", "2", "--steps", "2", "--threads", "1", "--work", str(tmp_path / "w"),
                               "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["shapes"]
    assert [r["model_type"] for r in rows] == ["t5", "bart"]
    assert all(0.29 < r["nonzero_ratio"] <= 0.30 and r["identical"] == r["docs"] == 2 for r in rows)
    assert all(r["distinct_summaries"] == 2 for r in rows)  # outputs that depend on the input
    assert "| bart-base | bart |" in (out.parent / "README.md").read_text()


def test_frontier_joins_the_committed_results(tmp_path):
    """The frontier page from the committed speed and quality files: every point names a shape
    timed in one run and a quality measured with seeds."""
    import frontier

    assert frontier.main(["--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert {r["shape"] for r in res["rows"]} >= {"6+3 L, ffn 1, heads 1"}
    assert all(r["seeds"] >= 3 and r["pct_min"] <= r["pct_mean"] <= r["pct_max"] for r in res["rows"])
    assert (tmp_path / "frontier.png").is_file() and "| 6+3 L, ffn 1, heads 1 |" in (tmp_path / "README.md").read_text()
    # no path of this machine in the file: every source relative to the repository
    assert not any(Path(r["source"]).is_absolute() for r in res["rows"]) and not Path(res["speed_source"]).is_absolute()
    assert all((ROOT / r["source"]).is_file() for r in res["rows"])
    # the speed run's flags follow its rows (the committed all-shapes run flagged CTranslate2 rows only)
    assert any(r["speed_flagged"] for r in res["rows"])
    assert not any(r["speed_flagged"] for r in res["rows"] if r["engine"] == "torch fp32")


def test_the_committed_frontier_holds_no_absolute_path():
    text = (ROOT / "docs" / "results" / "frontier" / "results.json").read_text()
    assert str(ROOT) not in text and '"/' not in text


def test_every_copied_control_names_its_source():
    """A dense control found in several committed structured_* results files was trained once: every
    copy names the file it came from (``copied_from``), and that file holds the same record."""
    files = sorted((ROOT / "docs" / "results").glob("structured_*/**/results.json"))
    seen: dict[str, list[tuple[str, dict]]] = {}
    for f in files:
        for r in json.loads(f.read_text())["quality"]["records"]:
            if r["variant"] == "dense_control":
                key = json.dumps({k: v for k, v in r.items() if k != "copied_from"}, sort_keys=True)
                seen.setdefault(key, []).append((str(f.relative_to(ROOT)), r))
    assert seen
    for key, copies in seen.items():
        originals = [f for f, r in copies if "copied_from" not in r]
        assert len(originals) == 1, (originals, key[:80])
        for f, r in copies:
            if "copied_from" in r:
                assert r["copied_from"] in {g for g, _ in copies} and r["copied_from"] != f, (f, r["copied_from"])


def test_every_committed_results_file_says_how_it_was_made():
    """Each results file names its command(s), its package versions (or says 'not recorded'), and,
    where it measured the proxy, the proxy's full sha256, which the committed proxy must match."""
    import hashlib

    results = ROOT / "docs" / "results"
    proxy_sha = hashlib.sha256((results / "proxy" / "compact.safetensors").read_bytes()).hexdigest()
    # the bases (proxy, yardstick) are model directories, not results files
    files = [p for p in sorted(results.glob("**/*.json")) if p.parent.name not in ("proxy", "yardstick")]
    assert files
    for p in files:
        d = json.loads(p.read_text())
        where = str(p.relative_to(ROOT))
        assert d.get("command") or d.get("commands") or d.get("meta", {}).get("command"), where
        if p.parent.name != "frontier":  # the frontier measures nothing: it joins other files
            assert d.get("versions") or d.get("versions_by_command"), where
        if "proxy_sha256" in json.dumps(d.get("settings", d.get("quality", {}).get("settings", {}))):
            assert d["proxy"]["sha256"] == proxy_sha, where
        if "yardstick_sha256" in json.dumps(d.get("settings", d.get("quality", {}).get("settings", {}))):
            yard = results / "yardstick" / "compact.safetensors"
            assert d["base"]["sha256"] == hashlib.sha256(yard.read_bytes()).hexdigest(), where


def test_trim_speed_page_shows_both_sides_and_the_dense_drift(tmp_path):
    """benchmarks/trim_speed.py --page-only: each cell's speed-ups against the dense model of the
    same run, the trimmed and full vocabulary side by side, the dense model's two timings, and a
    flag where a timing was not busy."""
    import json

    import trim_speed

    def row(shape, spd, busy=0.99):
        return {"shape": shape, "vocab": 16064 if "vocab" in shape else 32128, "speedup": spd, "busy": busy}

    cell = {"engine": "torch", "dtype": "fp32", "beams": 1, "output_lengths": "forced",
            "dense_run": {"s_per_doc": 2.0, "again_s_per_doc": 1.9},
            "rows": [row("dense", 1.0), row("enc4_dec3_ffn50_heads50", 2.2),
                     row("enc4_dec3_ffn50_heads50_vocab16064", 2.9, busy=0.5),
                     row("enc4_dec2_ffn50_heads50", 2.4), row("enc4_dec2_ffn50_heads50_vocab16064", 3.1)]}
    data = {"cells": {"torch-fp32-beams1-forced": cell}, "commands": ["python benchmarks/trim_speed.py"],
            "settings": {"vocab_size": 16064, "docs": 8, "threads": 1}}
    (tmp_path / "results.json").write_text(json.dumps(data))
    assert trim_speed.main(["--page-only", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "README.md").read_text()
    assert "| torch fp32 | 1 | 127 forced | 2.20× | 2.90× ⚑ | 2.40× | 3.10× | 2.00 (1.90) |" in page
    assert "busy share was under 85%" in page

"""score_result.py in-process: JSON keys and values, every bad input, empty predictions, models."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "billsum" / "us_test_sample.jsonl"

_spec = importlib.util.spec_from_file_location("score_result", ROOT / "score_result.py")
score_result = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(score_result)

SUMMARIES = [
    "Amends the Internal Revenue Code to allow a credit. Requires a report to Congress.",
    "Directs the Secretary of Labor to study, and report on, job training.",
    "Establishes a commission on rural broadband access.",
    "Prohibits the sale of certain chemicals. Sets penalties for violations.",
]
ALL_KEYS = ["kaggle_score", "rouge1", "rouge2", "rougeL", "rougeLsum", "n_docs"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # The default --model is ./pruned_model: never pick up one lying in the repo.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def refs(tmp_path) -> Path:
    path = tmp_path / "refs.jsonl"
    path.write_text("".join(json.dumps({"text": f"Bill text {i}.", "summary": s}) + "\n"
                            for i, s in enumerate(SUMMARIES)), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[list], header=("ID", "Predict")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(header)
        w.writerows(rows)
    return path


def as_generate_csv_writes(text: str) -> str:
    # generate_csv.py replaces commas at write time; the metric splits only the reference on
    # commas, so a prediction keeping "study," would not match the reference's "study".
    return text.replace(",", ".")


def perfect(tmp_path) -> Path:
    return write_csv(tmp_path / "submission.csv",
                     [[i, as_generate_csv_writes(s)] for i, s in enumerate(SUMMARIES)])


def run(*argv) -> int:
    return score_result.main([str(a) for a in argv])


def test_perfect_predictions_default_json_path(tmp_path, refs, capsys):
    assert run("--predictions", perfect(tmp_path), "--references", refs) == 0
    out = json.loads((tmp_path / "submission.scores.json").read_text())
    assert list(out) == ALL_KEYS + ["course"]
    assert out["course"] == {"baseline": 0.1134, "beats_baseline": True}  # no model: no ratio verdict
    assert out["n_docs"] == 4
    for k in ALL_KEYS[:-1]:
        assert out[k] == pytest.approx(1.0)
    stdout = capsys.readouterr().out
    assert "kaggle_score" in stdout and "wrote" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refs.jsonl", "submission.csv",
                                                          "submission.scores.json"]


def test_rows_matched_by_id_not_position(tmp_path, refs):
    rows = [[i, as_generate_csv_writes(s)] for i, s in enumerate(SUMMARIES)][::-1]
    write_csv(tmp_path / "p.csv", rows)
    assert run("--predictions", tmp_path / "p.csv", "--references", refs, "--json", "s.json",
               "--metrics", "kaggle") == 0
    assert json.loads(Path("s.json").read_text()) == {"kaggle_score": 1.0, "n_docs": 4,
                                                      "course": {"baseline": 0.1134, "beats_baseline": True}}


def test_partial_scores_and_json_none(tmp_path, refs):
    preds = [[0, "Amends the Internal Revenue Code"], [1, "nothing alike"], [2, SUMMARIES[2]],
             [3, "Prohibits the sale of certain chemicals."]]
    write_csv(tmp_path / "p.csv", preds)
    assert run("--predictions", tmp_path / "p.csv", "--references", refs, "--json", "none") == 0
    assert not list(tmp_path.glob("*.json"))
    from summprune.metrics import kaggle_score

    expected = kaggle_score([p for _, p in preds], SUMMARIES)
    assert 0 < expected < 1
    assert run("--predictions", tmp_path / "p.csv", "--references", refs, "--json", "o.json") == 0
    assert json.loads(Path("o.json").read_text())["kaggle_score"] == pytest.approx(expected, abs=1e-12)


def test_empty_and_missing_predictions_warn_and_score_zero(tmp_path, refs, capsys):
    # Row 1 is "", row 3 has no Predict field at all (pandas reads it as NaN).
    (tmp_path / "p.csv").write_text(
        f'"ID","Predict"\n"0","{SUMMARIES[0]}"\n"1",""\n"2","{SUMMARIES[2]}"\n"3"\n', encoding="utf-8")
    assert run("--predictions", tmp_path / "p.csv", "--references", refs, "--metrics", "kaggle,rouge") == 0
    err = capsys.readouterr().err
    assert "score_result.py: warning: 2 empty prediction(s) score 0 (line(s) 3, 5)" in err
    out = json.loads((tmp_path / "p.scores.json").read_text())
    assert out["kaggle_score"] == pytest.approx(0.5)
    assert out["rouge1"] == pytest.approx(0.5)


BAD_CASES = {
    "no Predict column": ("ID,Summary\n0,a\n", ["no Predict column", "line 1"]),
    "duplicate IDs": ("ID,Predict\n0,a\n1,b\n1,c\n2,d\n3,e\n2,f\n",
                      ["duplicate ID(s): 1 (lines 3, 4), 2 (lines 5, 7)"]),
    "missing IDs": ("ID,Predict\n0,a\n2,c\n", ["2 ID(s) of the 4 references", ": 1, 3"]),
    "extra IDs": ("ID,Predict\n0,a\n1,b\n2,c\n3,d\n4,e\n-1,f\n",
                  ["2 ID(s) have no reference", "-1 (line 7), 4 (line 6)"]),
    "non-integer IDs": ('"ID","Predict"\n"0","a"\n"one","b"\n"2.0","c"\n"3","d"\n',
                        ["non-integer ID on line 3 ('one'), line 4 ('2.0')"]),
    "non-UTF-8": ("ID,Predict\n0,a\n1,caf\xe9\n", ["not UTF-8: line 3"]),
    "extra field": ("ID,Predict\n0,a\n1,b,c\n", ["more fields than the header's 2 on line(s) 3"]),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_names_rows_and_writes_nothing(tmp_path, refs, capsys, case):
    text, expected = BAD_CASES[case]
    pred = tmp_path / "p.csv"
    pred.write_bytes(text.encode("latin-1" if case == "non-UTF-8" else "utf-8"))
    old = tmp_path / "p.scores.json"
    old.write_text('{"old": true}')  # an earlier result stays as it was
    before = sorted(tmp_path.iterdir())
    assert run("--predictions", pred, "--references", refs) == 2
    err = capsys.readouterr().err
    assert err.startswith("score_result.py: error: ")
    for part in expected:
        assert part in err
    assert sorted(tmp_path.iterdir()) == before
    assert old.read_text() == '{"old": true}'


def test_bad_options(tmp_path, refs, capsys):
    p = perfect(tmp_path)
    assert run("--predictions", p, "--references", refs, "--metrics", "kaggle,bleu") == 2
    assert run("--no-such-option") == 2  # argparse's own errors return too, not SystemExit
    assert "score_result.py: error: unrecognized arguments" in capsys.readouterr().err
    assert run("--predictions", p, "--references", refs, "--metrics", "ratio", "--model", "none") == 2
    assert "--metrics ratio needs a model" in capsys.readouterr().err
    assert run("--predictions", p, "--references", refs, "--model", tmp_path / "nope") == 2
    assert "model directory not found" in capsys.readouterr().err
    (tmp_path / "not_a_model").mkdir()
    assert run("--predictions", p, "--references", refs, "--model", tmp_path / "not_a_model") == 2
    assert "cannot load the model" in capsys.readouterr().err
    assert run("--predictions", tmp_path / "absent.csv", "--references", refs) == 2
    assert run("--predictions", p, "--references", tmp_path / "absent.jsonl") == 2
    assert not list(tmp_path.glob("*.json"))


@pytest.fixture
def model_dir(tmp_path) -> Path:
    from summprune.modeling import build_tiny_model

    path = tmp_path / "pruned_model"
    build_tiny_model(vocab_size=100).save_pretrained(path)
    return path


def test_model_ratios_from_the_model(tmp_path, refs, model_dir, capsys):
    from summprune import sparsity
    from summprune.modeling import load_pretrained

    # pruned_model/ in the working directory is found without --model.
    assert run("--predictions", perfect(tmp_path), "--references", refs, "--metrics", "kaggle,ratio") == 0
    out = json.loads((tmp_path / "submission.scores.json").read_text())
    assert list(out) == ["kaggle_score", "n_docs", "mask_ratio", "nonzero_ratio", "course"]
    # not a course directory: the grader cannot read it, whatever its ratio
    assert out["course"] == {"readable_by_grader": False, "max_ratio": 0.3, "ratio": None, "ratio_ok": False,
                             "baseline": 0.1134, "beats_baseline": True}
    model = load_pretrained(model_dir)
    assert out["mask_ratio"] == pytest.approx(sparsity.mask_ratio(model)) == 1.0
    assert out["nonzero_ratio"] == pytest.approx(sparsity.nonzero_ratio(model))
    assert "zero weights (no masks, no pruning.json)" in capsys.readouterr().out
    # With --model none (or --metrics without ratio) there are no ratio keys.
    assert run("--predictions", perfect(tmp_path), "--references", refs, "--model", "none",
               "--metrics", "kaggle") == 0
    assert list(json.loads((tmp_path / "submission.scores.json").read_text())) == ["kaggle_score", "n_docs", "course"]


def test_pruning_json_mask_ratio_is_used(tmp_path, refs, model_dir, capsys):
    (model_dir / "pruning.json").write_text(json.dumps({"final": {"mask_ratio": 0.4242, "nonzero_ratio": 0.5}}))
    other = tmp_path / "m2"
    model_dir.rename(other)
    assert run("--predictions", perfect(tmp_path), "--references", refs, "--model", other,
               "--metrics", "ratio", "--json", "r.json") == 0
    out = json.loads(Path("r.json").read_text())
    assert out["mask_ratio"] == 0.4242
    assert 0.99 < out["nonzero_ratio"] <= 1.0  # measured on the model, not read from the file
    assert "pruning.json final.mask_ratio" in capsys.readouterr().out
    (other / "pruning.json").write_text("{not json")
    assert run("--predictions", perfect(tmp_path), "--references", refs, "--model", other,
               "--metrics", "ratio", "--json", "r.json") == 0
    assert "counting the model instead" in capsys.readouterr().err
    assert json.loads(Path("r.json").read_text())["mask_ratio"] == 1.0


@pytest.mark.skipif(not SAMPLE.is_file(), reason="../shared/billsum/us_test_sample.jsonl not present")
def test_real_billsum_rows_first_sentence(tmp_path):
    from summprune.metrics import split_sentences

    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]

    def first_sentence(text: str) -> str:  # the first real sentence (skip headings like "SECTION 1.")
        sents = split_sentences(" ".join(text.split()))
        return next((s for s in sents if len(s.split()) >= 10), sents[0])

    write_csv(tmp_path / "lead.csv", [[i, first_sentence(r["text"])] for i, r in enumerate(rows)])
    assert run("--predictions", tmp_path / "lead.csv", "--references", SAMPLE, "--model", "none") == 0
    out = json.loads((tmp_path / "lead.scores.json").read_text())
    assert out["n_docs"] == 20
    assert 0 < out["kaggle_score"] < 1
    assert 0 < out["rougeL"] <= out["rougeLsum"] < 1


# ---- issue 22 (fuzz): data loss, silent wrong output ------------------------------------------

def test_json_that_is_an_input_is_refused(tmp_path, refs, model_dir, capsys):
    pred = perfect(tmp_path)
    (tmp_path / "refs_link.jsonl").symlink_to(refs)
    before = {p: p.read_bytes() for p in (pred, refs)}
    model_before = {f.name: f.read_bytes() for f in model_dir.iterdir()}
    for js, needles in ((pred, ["--predictions"]), ("submission.csv", ["--predictions"]),
                        (refs, ["--references"]), (tmp_path / "refs_link.jsonl", ["--references"]),
                        (model_dir / "config.json", ["model directory", str(model_dir)])):
        assert run("--predictions", pred, "--references", refs, "--model", model_dir, "--json", js) == 2
        err = capsys.readouterr().err
        assert err.startswith("score_result.py: error: ") and f"--json {js}" in err
        for needle in needles:
            assert needle in err, err
    assert {p: p.read_bytes() for p in (pred, refs)} == before
    assert {f.name: f.read_bytes() for f in model_dir.iterdir()} == model_before


def test_ragged_reference_csv_is_refused_not_shifted(tmp_path, capsys):
    refs = tmp_path / "refs.csv"
    # one unquoted comma too many on the first row: pandas made the text an index column and
    # scored every prediction against the wrong field
    refs.write_text("text,summary\nBill text 0.,Amends the Act, and more.\nBill text 1.,Repeals it.\n",
                    encoding="utf-8")
    write_csv(tmp_path / "p.csv", [[0, "Amends the Act. and more."], [1, "Repeals it."]])
    assert run("--predictions", tmp_path / "p.csv", "--references", refs, "--json", "none") == 2
    err = capsys.readouterr().err
    assert str(refs) in err and "line 2 has 3 fields" in err and "header" in err


def test_unterminated_quote_is_a_malformed_csv_not_missing_ids(tmp_path, refs, capsys):
    (tmp_path / "p.csv").write_text('"ID","Predict"\n"0","a\n"1","b"\n"2","c"\n"3","d"\n', encoding="utf-8")
    assert run("--predictions", tmp_path / "p.csv", "--references", refs) == 2
    err = capsys.readouterr().err
    assert "malformed CSV" in err and "line 2" in err and "no prediction" not in err


def test_without_a_model_a_line_says_the_ratios_need_one(tmp_path, refs, capsys):
    assert run("--predictions", perfect(tmp_path), "--references", refs) == 0
    out = capsys.readouterr().out
    assert "mask_ratio" in out and "--model" in out


def test_a_huge_field_is_cut_with_a_warning_and_scoring_stays_fast(tmp_path, refs, capsys):
    """A 100 MB prediction took 508 s and 8 GB (the metrics cost the product of the lengths): a
    field past MAX_FIELD_CHARS is scored on its first MAX_FIELD_CHARS characters, named in a
    warning; the score is the one of the cut text."""
    import time

    from summprune.metrics import kaggle_score

    cap = score_result.MAX_FIELD_CHARS
    huge = as_generate_csv_writes(SUMMARIES[1]) + " filler" * 2_000_000  # 14 MB
    rows = [[i, as_generate_csv_writes(s)] for i, s in enumerate(SUMMARIES)]
    rows[1][1] = huge
    pred = write_csv(tmp_path / "big.csv", rows)
    start = time.perf_counter()
    assert run("--predictions", str(pred), "--references", str(refs), "--model", "none") == 0
    assert time.perf_counter() - start < 60
    err = capsys.readouterr().err
    assert f"1 prediction(s) longer than {cap:,} characters" in err
    assert f"ID 1 (line 3 of {pred})" in err and f"{len(huge):,} characters" in err
    scores = json.loads((tmp_path / "big.scores.json").read_text())
    cut = [r[1] for r in rows]
    cut[1] = huge[:cap]
    assert scores["kaggle_score"] == pytest.approx(kaggle_score(cut, SUMMARIES))


def test_limit_scores_the_first_n_references_and_says_so(tmp_path, refs, capsys):
    # what `generate_csv.py --limit 2` writes: IDs 0 and 1 only
    write_csv(tmp_path / "p.csv", [[i, as_generate_csv_writes(s)] for i, s in enumerate(SUMMARIES[:2])])
    # without --limit it is refused, and the refusal says how to score it
    assert run("--predictions", tmp_path / "p.csv", "--references", refs) == 2
    err = capsys.readouterr().err
    assert "2 ID(s) of the 4 references" in err and "--limit 2" in err
    assert not list(tmp_path.glob("*.json"))

    assert run("--predictions", tmp_path / "p.csv", "--references", refs, "--limit", "2") == 0
    out = capsys.readouterr().out
    assert "--limit 2: scored the first 2 of the 4 references (IDs 0..1)" in out and "partial score" in out
    assert "(on the first 2 of 4 references only, --limit)" in out
    scores = json.loads((tmp_path / "p.scores.json").read_text())
    assert list(scores)[:8] == ALL_KEYS + ["limit", "n_references"]
    assert (scores["n_docs"], scores["limit"], scores["n_references"]) == (2, 2, 4)
    assert scores["kaggle_score"] == pytest.approx(1.0)


def test_limit_on_a_full_csv_leaves_out_and_counts_the_rest(tmp_path, refs, capsys):
    rows = [[0, as_generate_csv_writes(SUMMARIES[0])], [1, "nothing alike"], [2, "nothing alike"],
            [3, "nothing alike"]]
    write_csv(tmp_path / "p.csv", rows)
    assert run("--predictions", tmp_path / "p.csv", "--references", refs, "--limit", "1", "--json", "o.json") == 0
    assert "3 prediction(s) with a higher ID left out" in capsys.readouterr().out
    assert json.loads(Path("o.json").read_text())["kaggle_score"] == pytest.approx(1.0)
    # a limit past the references scores them all, and says there are fewer
    assert run("--predictions", tmp_path / "p.csv", "--references", refs, "--limit", "9", "--json", "o.json") == 0
    out = capsys.readouterr().out
    assert "scored the first 4 of the 4 references" in out and "there are only 4" in out
    assert "partial" not in out
    assert json.loads(Path("o.json").read_text())["n_docs"] == 4


def test_limit_still_refuses_missing_ids_below_it_and_bad_values(tmp_path, refs, capsys):
    write_csv(tmp_path / "p.csv", [[0, "a"], [2, "c"]])
    assert run("--predictions", tmp_path / "p.csv", "--references", refs, "--limit", "3") == 2
    err = capsys.readouterr().err
    assert "1 ID(s) of the first 3 of the 4 references (0..2) have no prediction: 1" in err
    assert "a CSV of the first N documents (generate_csv.py --limit N) is scored with --limit N" not in err
    assert run("--predictions", tmp_path / "p.csv", "--references", refs) == 2
    assert "is scored with --limit N" in capsys.readouterr().err  # not a prefix 0..k-1: the general hint
    assert run("--predictions", tmp_path / "p.csv", "--references", refs, "--limit", "0") == 2
    assert "--limit must be >= 1 (got 0)" in capsys.readouterr().err
    write_csv(tmp_path / "q.csv", [[0, "a"], [7, "b"]])
    assert run("--predictions", tmp_path / "q.csv", "--references", refs, "--limit", "1") == 2
    assert "1 ID(s) have no reference (only 0..3 exist): 7 (line 3)" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))

"""summprune.metrics: the course metric (fast == reference), ROUGE, sentences, the CSV reader."""

from __future__ import annotations

import random

import pytest

from summprune.metrics import (ROUGE_TYPES, PredictionsError, kaggle_score, kaggle_score_reference,
                               kaggle_scores, read_predictions, rouge, split_sentences)


def _random_text(rng: random.Random, vocab: list[str], n_max: int) -> str:
    out = []
    for _ in range(rng.randint(0, n_max)):
        w = rng.choice(vocab)
        if rng.random() < 0.3:
            w = w.upper() if rng.random() < 0.5 else w.capitalize()
        out.append(w + rng.choice(["", "", "", "", ",", ".", ". ", " .", ",,", "..."]))
    sep = rng.choice([" ", "  ", "\n", " \t"])
    return sep.join(out)


@pytest.mark.parametrize("seed", range(5))
def test_fast_equals_reference_on_random_cases(seed):
    rng = random.Random(seed)
    # Small vocabularies force repeats (many LCS ties); the large one rarely matches.
    vocab = rng.choice([["a", "b", "c"], [f"w{i}" for i in range(12)], [f"tok{i}" for i in range(400)],
                        ["é", "Straße", "naïve", "x", "y"]])
    preds = [_random_text(rng, vocab, rng.choice([0, 5, 40, 130])) for _ in range(60)]
    refs = [_random_text(rng, vocab, rng.choice([0, 5, 60, 250])) for _ in range(60)]
    fast = kaggle_scores(preds, refs)
    for p, r, f in zip(preds, refs, fast):
        assert abs(f - kaggle_score_reference([p], [r])) <= 1e-9, (p, r)
    assert abs(kaggle_score(preds, refs) - kaggle_score_reference(preds, refs)) <= 1e-9


def test_hand_computed_example():
    ref = "The cat sat, on the mat."
    # Fragments "the cat sat" (3 tokens) and "on the mat" (3); "" adds nothing.
    # "the cat sat": LCS 3 with "the cat sat"; "on the mat": LCS 1 ("the") -> 4 / 6.
    assert kaggle_score(["the cat sat"], [ref]) == pytest.approx(4 / 6, abs=1e-12)
    # Each reference fragment keeps its best prediction fragment: 3 + 3 of 6.
    assert kaggle_score(["On the mat. The cat sat"], [ref]) == pytest.approx(1.0)
    # Recall only: extra predicted words cost nothing.
    assert kaggle_score(["the big cat sat down. we sat on the red mat"], [ref]) == pytest.approx(1.0)
    # Case-insensitive; tokens are whitespace-separated, so "sat!" is not "sat".
    assert kaggle_score(["THE CAT sat!"], [ref]) == pytest.approx(3 / 6)
    assert kaggle_score_reference(["THE CAT sat!"], [ref]) == pytest.approx(3 / 6)


def test_empty_reference_and_empty_prediction_score_zero():
    assert kaggle_scores(["anything here"], [""]) == [0.0]
    assert kaggle_scores(["anything here"], [" , . ,"]) == [0.0]
    assert kaggle_scores([""], ["a real summary."]) == [0.0]
    assert kaggle_scores([None, float("nan"), "   "], ["a b", "a b", "a b"]) == [0.0, 0.0, 0.0]
    assert kaggle_score_reference([None, float("nan")], ["a b", "a b"]) == 0.0
    pd = pytest.importorskip("pandas")
    assert kaggle_scores([pd.NA], ["a b"]) == [0.0]


def test_mean_over_documents():
    assert kaggle_score(["a b", "", "a"], ["a b", "a b", "a b"]) == pytest.approx((1 + 0 + 0.5) / 3)


def test_reference_commas_split_fragments():
    # With the comma as a boundary each half finds its own prediction fragment: 4/4. Taken as
    # one fragment "a b c d", the best single prediction fragment would give 2/4.
    assert kaggle_score(["c d. a b"], ["a b, c d"]) == pytest.approx(1.0)
    assert kaggle_score(["c d. a b"], ["a b c d"]) == pytest.approx(0.5)


def test_prediction_commas_are_not_replaced():
    # The prediction's "b," stays one token and does not match "b"; its comma splits nothing.
    assert kaggle_score(["a b, c d"], ["a b. c d"]) == pytest.approx(3 / 4)
    assert kaggle_score(["a b. c d"], ["a b. c d"]) == pytest.approx(1.0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        kaggle_score(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no documents"):
        kaggle_score([], [])
    with pytest.raises(TypeError, match="expected text"):
        kaggle_scores([3], ["a"])


def test_split_sentences():
    text = "Amends the U.S. Code. (Sec. 2) Requires the Secretary, e.g. Mr. Smith, to act. It is 3.5 percent."
    assert split_sentences(text) == ["Amends the U.S. Code.",
                                     "(Sec. 2) Requires the Secretary, e.g. Mr. Smith, to act.",
                                     "It is 3.5 percent."]
    assert split_sentences("One! Two? 3 items.\nA new line without a stop\n\n") == \
        ["One!", "Two?", "3 items.", "A new line without a stop"]
    assert split_sentences("no capital. after this stop") == ["no capital. after this stop"]
    assert split_sentences("") == []


def test_rouge_identical_text_is_one():
    texts = ["The committee approves the bill. It takes effect in 2020.", "A short one."]
    out = rouge(texts, texts)
    assert list(out) == list(ROUGE_TYPES)
    for k in ROUGE_TYPES:
        assert out[k] == pytest.approx(1.0)


def test_rouge_matches_rouge_score_and_empty_prediction():
    from rouge_score import rouge_scorer

    preds = ["Requires the Secretaries to report. Amending laws were studied.", "", None]
    refs = ["The Secretary shall report on the amended laws. Studies are required.",
            "Something here.", "Something else."]
    plain = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    expected = plain.score("\n".join(split_sentences(refs[0])), "\n".join(split_sentences(preds[0])))
    out = rouge(preds, refs)
    for k in ROUGE_TYPES:  # the memoised stemmer changes nothing; empty predictions score 0
        assert out[k] == pytest.approx(expected[k].fmeasure / 3, abs=1e-12)
    assert out["rouge1"] > 0


def test_rougelsum_uses_sentences():
    ref = "The tax credit is extended. The agency must report to Congress."
    pred = "The agency must report to Congress. The tax credit is extended."
    out = rouge([pred], [ref])
    # One LCS over the whole text matches only one of the two sentences in order; the
    # summary-level LCS matches each sentence against its counterpart.
    assert out["rougeLsum"] == pytest.approx(1.0)
    assert out["rougeL"] < 0.75
    assert out["rouge1"] == pytest.approx(1.0)
    one = rouge(["The tax credit is extended for the agency."], ["The agency extends the tax credit."])
    assert one["rougeL"] == pytest.approx(one["rougeLsum"])  # one sentence each: the same


def test_rouge_workers_give_the_same_result():
    rng = random.Random(1)
    words = ["Tax", "credit", "agency", "report", "extends", "the", "a", "Congress", "law"]
    refs = [" ".join(rng.choices(words, k=12)) + ". " + " ".join(rng.choices(words, k=8)) + "."
            for _ in range(120)]
    preds = [" ".join(rng.choices(words, k=10)) for _ in range(120)]
    assert rouge(preds, refs, workers=2) == rouge(preds, refs)


def _write(path, text: str, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_read_predictions_lines_and_empties(tmp_path):
    p = _write(tmp_path / "p.csv", '\ufeff"ID","Predict"\n"1","b"\n"0","multi\nline"\n\n"2",""\n"3"\n')
    got = read_predictions(p)
    assert got.aligned(4) == ["multi\nline", "b", "", ""]
    assert got.empty_lines == [6, 7]
    assert got.line_of == {1: 2, 0: 3, 2: 6, 3: 7}


def test_read_predictions_errors_name_lines(tmp_path):
    p = _write(tmp_path / "p.csv", 'ID,Predict\n0,"a\nb"\nx,c\n0,d\n2,e,f\n')
    with pytest.raises(PredictionsError) as e:
        read_predictions(p)
    msg = str(e.value)
    assert "more fields than the header's 2 on line(s) 6" in msg
    assert "non-integer ID on line 4 ('x')" in msg
    assert "duplicate ID(s): 0 (lines 2, 5)" in msg
    with pytest.raises(PredictionsError, match=r"2 ID\(s\) of the 4 references .*: 1, 3"):
        read_predictions(_write(tmp_path / "q.csv", "ID,Predict\n0,a\n2,b\n")).aligned(4)
    with pytest.raises(PredictionsError, match=r"not UTF-8: line 3"):
        read_predictions(_write(tmp_path / "r.csv", "ID,Predict\n0,a\n1,caf\xe9\n", "latin-1"))


def test_read_predictions_unterminated_quote_names_the_line(tmp_path):
    # issue 22: a lenient parser merged every later row into row 0's Predict ("missing IDs")
    p = tmp_path / "p.csv"
    p.write_text('ID,Predict\n0,fine\n1,"never closed\n2,c\n3,d\n', encoding="utf-8")
    with pytest.raises(PredictionsError, match=r"p.csv: malformed CSV: the row starting on line 3"):
        read_predictions(p)

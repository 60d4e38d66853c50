"""The offline synthetic corpus and the on-the-fly tokenizer."""

from __future__ import annotations

import re

import pytest
from transformers import AutoTokenizer

from summprune.synthetic import corpus_stats, make_corpus
from summprune.tokenizer import train_tokenizer

KEYS = {"bill_id", "title", "text", "summary"}


@pytest.fixture(scope="module")
def easy():
    return make_corpus(60, seed=42)


@pytest.fixture(scope="module")
def hard():
    return make_corpus(30, seed=42, difficulty="hard")


@pytest.fixture(scope="module")
def tok(easy):
    return train_tokenizer([r["text"] for r in easy] + [r["summary"] for r in easy], vocab_size=800)


def _words(s: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9]+", s.lower())


# ---------------------------------------------------------------------------------- corpus


@pytest.mark.parametrize("difficulty", ["easy", "hard", "copy"])
def test_deterministic(difficulty):
    assert make_corpus(12, seed=7, difficulty=difficulty) == make_corpus(12, seed=7, difficulty=difficulty)


def test_prefix_stable(easy):
    assert make_corpus(10, seed=42) == easy[:10]


def test_seeds_and_difficulties_differ(easy):
    other = make_corpus(60, seed=43)
    assert [r["text"] for r in other] != [r["text"] for r in easy]
    assert {r["text"] for r in other}.isdisjoint(r["text"] for r in easy)
    assert {r["bill_id"] for r in other}.isdisjoint(r["bill_id"] for r in easy)
    assert make_corpus(5, seed=42, difficulty="hard")[0]["text"] != easy[0]["text"]


def test_no_global_random_state():
    import random

    random.seed(0)
    a = random.random()
    random.seed(0)
    make_corpus(5)
    assert random.random() == a


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_fields(difficulty):
    rows = make_corpus(20, seed=3, difficulty=difficulty)
    assert len(rows) == 20
    for i, r in enumerate(rows):
        assert set(r) == KEYS
        assert all(isinstance(v, str) and v.strip() for v in r.values())
        assert r["bill_id"] == f"synth-{difficulty}-3-{i:04d}"
        assert r["text"].startswith("SECTION 1. SHORT TITLE.")
        assert f"``{r['title']}''" in r["text"]
        assert r["summary"].startswith(r["title"] + " - Amends the ")
        assert "SEC. 2." in r["text"] and " is amended" in r["text"]
    assert len({r["bill_id"] for r in rows}) == 20


def test_bad_arguments():
    with pytest.raises(ValueError, match="difficulty"):
        make_corpus(3, difficulty="medium")
    with pytest.raises(ValueError):
        make_corpus(-1)
    assert make_corpus(0) == []


@pytest.mark.parametrize("difficulty", ["easy", "hard", "copy"])
def test_summary_copyable(difficulty):
    """Most summary words occur in the text, so copying from the input pays off."""
    for r in make_corpus(40, seed=5, difficulty=difficulty):
        text_words = set(_words(r["text"]))
        words = _words(r["summary"])
        share = sum(w in text_words for w in words) / len(words)
        assert share >= 0.8, (share, r["summary"])


def test_primary_content_in_summary_distractors_not(easy):
    for r in easy:
        s = r["summary"]
        act = re.search(r" - Amends the (.+?) to ", s).group(1)
        assert re.search(rf"Section \d+ of the {re.escape(act)} \(", r["text"])
        agency = re.search(r"Requires the (.+?) to ", s).group(1)
        assert f"the {agency} shall " in r["text"]
        assert ("AUTHORIZATION OF APPROPRIATIONS" in r["text"]) == ("Authorizes appropriations" in s)


def test_hard_distractors_and_sentences(hard):
    for r in hard:
        s = r["summary"]
        n_sent = s.count("Amends the ") + s.count("Requires the ") + s.count("Authorizes appropriations")
        assert 2 <= n_sent <= 4, s
        # Every primary amendment (flagged by a Purpose subsection) is summarised; conforming
        # amendments and sense-of-Congress sections are not.
        assert s.count("Amends the ") == r["text"].count("(a) Purpose.--")
        assert s.count("Requires the ") == r["text"].count("Not later than ")
        assert ("AUTHORIZATION OF APPROPRIATIONS" in r["text"]) == ("Authorizes appropriations" in s)
    assert any("TECHNICAL AND CONFORMING AMENDMENTS" in r["text"] for r in hard)
    assert any("SENSE OF CONGRESS" in r["text"] for r in hard)


def test_lengths(easy, hard):
    e, h = corpus_stats(easy), corpus_stats(hard)
    assert 150 <= e["text_words_min"] and e["text_words_max"] <= 400
    assert 20 <= e["summary_words_min"] and e["summary_words_max"] <= 60
    assert 400 <= h["text_words_min"] and h["text_words_max"] <= 950
    assert h["text_words_mean"] > 2 * e["text_words_mean"]
    assert h["summary_words_mean"] > e["summary_words_mean"]
    assert h["text_word_types"] > e["text_word_types"]
    assert corpus_stats([]) == {"docs": 0}


# ------------------------------------------------------------------------------- tokenizer


def test_special_ids(tok):
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    assert tok.model_max_length >= 4096
    assert len(tok) <= 800


def test_eos_appended_and_targets(tok):
    ids = tok("Amends the Clean Air Act.")["input_ids"]
    assert ids[-1] == 1 and 1 not in ids[:-1] and 0 not in ids
    labels = tok(text_target=["Act of 2019.", "Requires the Secretary of Energy"])["input_ids"]
    assert all(seq[-1] == 1 for seq in labels)
    batch = tok(["a", "Amends the Clean Air Act."], padding=True)
    assert batch["input_ids"][0][-1] == 0  # right padding with <pad>
    trunc = tok("Amends the Clean Air Act of 2019.", max_length=4, truncation=True)["input_ids"]
    assert len(trunc) == 4 and trunc[-1] == 1


@pytest.mark.parametrize("s", ["Amends the Clean Air Act.",
                               "Rural Access Act of 2019 - Amends the Social Security Act to establish a "
                               "grant program for veterans, farmers and ranchers.",
                               "summarize: SEC. 2. (a) In general.--Section 12 (42 U.S.C. 7401) is amended."])
def test_decode_round_trip(tok, s):
    ids = tok(s)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == s


def test_decode_normalises_whitespace_and_unknowns(tok):
    ids = tok("SEC. 2.\n\n    Amends  the Act.")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "SEC. 2. Amends the Act."
    ids = tok("caf\u00e9 \u2603 Act")["input_ids"]  # unseen non-ASCII -> <unk>, no crash
    assert 2 in ids


def test_quoted_word_is_the_same_token_as_elsewhere(tok):
    """``Clean Air Act'' in a bill and "Clean" in its summary: the same token, so a model copies it."""
    quoted = tok.convert_ids_to_tokens(tok("cited as the ``Clean Air Act''.")["input_ids"])
    plain = tok.convert_ids_to_tokens(tok("Clean Air Act")["input_ids"])
    assert plain[0] in quoted and quoted[quoted.index(plain[0]) - 1] == "▁``"


def test_known_words_are_single_tokens(tok):
    toks = tok.convert_ids_to_tokens(tok("the Secretary shall submit")["input_ids"])
    assert toks == ["▁the", "▁Secretary", "▁shall", "▁submit", "</s>"]


def test_save_load_round_trip(tok, easy, tmp_path):
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id) == (0, 1, 2)
    assert len(loaded) == len(tok)
    texts = [r["text"] for r in easy[:10]] + [r["summary"] for r in easy[:10]] + ["caf\u00e9 Act"]
    assert loaded(texts)["input_ids"] == tok(texts)["input_ids"]
    assert loaded(text_target=texts)["input_ids"] == tok(text_target=texts)["input_ids"]
    ids = loaded(easy[0]["summary"])["input_ids"]
    assert loaded.decode(ids, skip_special_tokens=True) == easy[0]["summary"]


def test_works_with_data_tokenize(tok, easy):
    import datasets

    from summprune.data import tokenize

    ds = tokenize(datasets.Dataset.from_list(easy[:8]), tok, "summarize: ", 64, 32)
    assert set(ds.column_names) >= {"input_ids", "attention_mask", "labels"}
    assert all(len(x) <= 64 and x[-1] == 1 for x in ds["input_ids"])
    assert all(len(y) <= 32 and y[-1] == 1 for y in ds["labels"])


def test_copy_summaries_need_the_text():
    """'copy': names are drawn per bill, so a summary is hardly writable from another bill's text:
    the course metric of the next bill's reference against this one is ~0.3 (template words)."""
    from summprune.metrics import kaggle_score

    rows = make_corpus(200, seed=11, difficulty="copy")
    refs = [r["summary"] for r in rows]
    assert kaggle_score(refs[1:] + refs[:1], refs) < 0.4
    assert len({r["title"] for r in rows}) == len(rows)  # no title repeats
    for r in rows:
        assert r["summary"].startswith(r["title"] + " - ")
        assert f"``{r['title']}''" in r["text"]
        for act in re.findall(r"Amends the (.+? Act) to ", r["summary"]):
            assert re.search(rf"Section \d+ of the {re.escape(act)} \(", r["text"])
        for office in re.findall(r"Establishes the (.+?) within the ", r["summary"]):
            assert f"``{office}''" in r["text"]
        # the distractors are in the text and not in the summary
        if "TECHNICAL AND CONFORMING AMENDMENTS" in r["text"]:
            other = re.search(r"AMENDMENTS\.\s+Section \d+ of the (.+? Act) \(", r["text"]).group(1)
            assert other not in r["summary"]
    assert corpus_stats(rows)["text_words_max"] < 300  # read whole at max_source_length=384


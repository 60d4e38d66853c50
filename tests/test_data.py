"""Data loading from local files, validation carve-out, tokenisation, clear errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import SHARED
from summprune.data import DataError, load_split, tokenize, train_val_split

ROWS = [{"text": f"Bill number {i} amends the Act.", "summary": f"Amends act {i}.", "title": f"T{i}"}
        for i in range(10)]


def write(tmp_path, name, rows):
    p = tmp_path / name
    if name.endswith(".jsonl"):
        p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif name.endswith(".csv"):
        pd.DataFrame(rows).to_csv(p, index=False)
    else:
        pd.DataFrame(rows).to_parquet(p)
    return p


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv", "d.parquet"])
def test_local_formats_keep_order(tmp_path, name):
    ds = load_split(str(write(tmp_path, name, ROWS)), "test")
    assert ds["text"] == [r["text"] for r in ROWS]
    assert "title" in ds.column_names


def test_directory_with_split_files(tmp_path):
    write(tmp_path, "train.jsonl", ROWS)
    write(tmp_path, "test.csv", ROWS[:3])
    assert len(load_split(str(tmp_path), "train")) == 10
    assert len(load_split(str(tmp_path), "test")) == 3
    with pytest.raises(DataError, match="no ca_test"):
        load_split(str(tmp_path), "ca_test")


def test_missing_column_names_file(tmp_path):
    p = write(tmp_path, "d.jsonl", [{"text": "x"}])
    with pytest.raises(DataError, match=r"d.jsonl: missing column\(s\) \['summary'\]"):
        load_split(str(p), "test")
    # text alone is enough when only text is needed (generation)
    assert len(load_split(str(p), "test", columns=("text",))) == 1


def test_empty_file_and_empty_text(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("")
    with pytest.raises(DataError, match="e.jsonl: no rows"):
        load_split(str(p), "test")
    p = write(tmp_path, "d.jsonl", ROWS[:3] + [{"text": "  ", "summary": "s"}])
    with pytest.raises(DataError, match="row 3 has an empty or missing 'text'"):
        load_split(str(p), "test")


def test_bad_json_line_and_missing_file(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "summary": "b"}\n{oops\n')
    with pytest.raises(DataError, match="line 2"):
        load_split(str(p), "test")
    with pytest.raises(DataError, match="not found"):
        load_split(str(tmp_path / "missing.jsonl"), "test")


def test_validation_carve_out_is_fixed(tmp_path):
    ds = load_split(str(write(tmp_path, "d.jsonl", ROWS)), "train")
    a_tr, a_val = train_val_split(ds, 3, seed=42)
    b_tr, b_val = train_val_split(ds, 3, seed=42)
    assert a_val["text"] == b_val["text"] and len(a_tr) == 7
    assert not set(a_val["text"]) & set(a_tr["text"])
    with pytest.raises(DataError, match="val_size"):
        train_val_split(ds, 10)


def test_real_billsum_rows_tokenize_with_real_tokenizer(shared_dir):
    from summprune.modeling import load_tokenizer

    ds = load_split(str(SHARED / "billsum" / "us_test_sample.jsonl"), "test")
    assert len(ds) == 20 and {"text", "summary", "title"} <= set(ds.column_names)
    tok = load_tokenizer(shared_dir / "t5-small")
    enc = tokenize(ds, tok, "summarize: ", 1024, 128)
    lengths = [len(x) for x in enc["input_ids"]]
    assert max(lengths) == 1024  # real bills are longer than 1024 tokens: truncated
    assert all(len(x) <= 128 for x in enc["labels"])
    assert all(x[-1] == tok.eos_token_id for x in enc["input_ids"])
    assert tok.decode(enc["input_ids"][0][:3]).startswith("summarize:")


# ---- issue 22 (fuzz) ---------------------------------------------------------------------------

def test_ragged_csv_rows_are_refused_naming_the_line(tmp_path):
    p = tmp_path / "d.csv"
    # one unquoted comma too many on the first row: pandas made "Bill 0" an index column and
    # shifted every field of every row (text <- summary)
    p.write_text("text,summary\nBill 0, amended,Amends.\nBill 1,Repeals.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.csv: line 2 has 3 fields, but the header \(line 1\) has 2"):
        load_split(str(p), "test")
    p.write_text("text,summary\nBill 0,Amends.\nBill 1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.csv: line 3 has 1 field, but"):
        load_split(str(p), "test")


def test_csv_quoting_and_an_unterminated_quote(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('\ufefftext,summary\n"A, quoted\nbill",""\n\nplain,s\n', encoding="utf-8")
    ds = load_split(str(p), "test", allow_empty=("summary",))
    assert ds["text"] == ["A, quoted\nbill", "plain"] and ds["summary"] == ["", "s"]
    p.write_text('text,summary\nBill 0,"never closed\nBill 1,s\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d.csv: malformed CSV: the row starting on line 2"):
        load_split(str(p), "test")


def test_val_size_too_large_says_to_lower_it(tmp_path):
    ds = load_split(str(write(tmp_path, "d.jsonl", ROWS)), "train")
    with pytest.raises(DataError, match=r"data.val_size=200 .* 10 rows.*lower data.val_size \(e.g. data.val_size=1\)"):
        train_val_split(ds, 200)


def test_prefix_that_fills_the_input_is_refused(tmp_path):
    from summprune.tokenizer import train_tokenizer

    tok = train_tokenizer([r["text"] for r in ROWS], vocab_size=60)
    ds = load_split(str(write(tmp_path, "d.jsonl", ROWS)), "train")
    with pytest.raises(DataError, match=r"data.prefix='summarize the bill: ' takes \d+ tokens.*no room for the "
                                        r"document within data.max_source_length=4"):
        tokenize(ds, tok, "summarize the bill: ", 4, 16)
    assert len(tokenize(ds, tok, "s: ", 64, 16)) == 10


def test_offline_hub_model_error_hints_a_local_path(monkeypatch):
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from summprune import modeling

    def offline(*a, **kw):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find "
                      "them in the cached files.\nCheck your internet connection")

    monkeypatch.setattr(T5ForConditionalGeneration, "from_pretrained", offline)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", offline)
    for load in (modeling.load_pretrained, modeling.load_tokenizer):
        with pytest.raises(OSError, match=r"'t5-small': cannot load the .* from the Hugging Face hub \(We couldn't "
                                          r"connect.*\); offline, pass a local model directory"):
            load("t5-small")

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

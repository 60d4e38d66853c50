"""BillSum by hub name, the offline synthetic corpus, or local JSONL/CSV/parquet files.

Every loader returns a ``datasets.Dataset`` with at least ``text`` (and ``summary`` when asked
for); rows keep the file's order, so row index == the course CSV's ``ID``. Bad input raises
``DataError`` naming the file and row.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

HUB_NAMES = {"billsum": "FiscalNote/billsum"}
HUB_SPLITS = ("train", "test", "ca_test")
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class DataError(ValueError):
    """Unusable data: the message names the file (and row)."""


def _read_table(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = []
        try:
            # utf-8-sig: a byte-order mark is tolerated, as in CSV files
            with path.open(encoding="utf-8-sig", newline="") as f:
                text = f.read()
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 ({e})") from None
        stripped = text.lstrip()
        if suffix == ".json" and stripped.startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: invalid JSON: {e}") from None
        else:
            # JSON Lines are separated by "\n" only: str.splitlines() would also split at U+2028,
            # U+0085 and other characters that a valid JSON string may hold unescaped.
            for i, line in enumerate(text.split("\n")):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {i + 1} is not valid JSON: {e}") from None
        for i, r in enumerate(rows):
            if not isinstance(r, dict):
                raise DataError(f"{path}: row {i} is not a JSON object")
        return rows
    import pandas as pd

    try:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise DataError(f"{path}: unsupported file type {suffix!r}; use one of {list(SUFFIXES)}")
    except (UnicodeDecodeError, ValueError, OSError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: cannot read: {e}") from None
    return df.to_dict(orient="records")


def validate_rows(rows: list[dict], source: str, columns: tuple[str, ...], allow_empty: tuple[str, ...] = ()) -> None:
    """Every row has every column as a non-empty string (or any string, for ``allow_empty``);
    else a DataError naming the row."""
    if not rows:
        raise DataError(f"{source}: no rows")
    present = set(rows[0])
    missing = [c for c in columns if c not in present]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {sorted(present)}")
    for i, r in enumerate(rows):
        for c in columns:
            v = r.get(c)
            if not isinstance(v, str) or (not v.strip() and c not in allow_empty):
                raise DataError(f"{source}: row {i} has an empty or missing {c!r}")


def resolve_local(dataset: str, split: str) -> Path | None:
    """The file a local ``dataset`` means for ``split``, or None if it is not local."""
    p = Path(dataset).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        for suf in SUFFIXES:
            f = p / f"{split}{suf}"
            if f.is_file():
                return f
        raise DataError(f"{p}: no {split}.jsonl/.csv/.parquet in this directory")
    if dataset in HUB_NAMES or dataset == "synthetic":
        return None
    if "/" in dataset or "\\" in dataset or Path(dataset).suffix.lower() in SUFFIXES:
        raise DataError(f"{dataset}: data file or directory not found")
    return None


def load_split(dataset: str, split: str, columns: tuple[str, ...] = ("text", "summary"),
               *, synthetic_docs: int = 600, seed: int = 42, allow_empty: tuple[str, ...] = ()) -> datasets.Dataset:
    """Rows of one split as a Dataset, validated for ``columns``.

    ``dataset``: 'billsum' (hub; splits train/test/ca_test), 'synthetic' (offline corpus,
    ``synthetic_docs`` documents for train and a quarter of that for other splits), a file,
    or a directory with ``<split>.<suffix>``. Columns in ``allow_empty`` may hold empty strings
    (score_result.py: the course metric scores a document with an empty reference 0).
    """
    local = resolve_local(dataset, split)
    if local is not None:
        rows = _read_table(local)
        validate_rows(rows, str(local), columns, allow_empty)
        keep = [c for c in ("text", "summary", "title", "bill_id") if c in rows[0]]
        return datasets.Dataset.from_list([{c: r.get(c) for c in keep} for r in rows])
    if dataset == "synthetic":
        from .synthetic import make_corpus

        n = synthetic_docs if split == "train" else max(8, synthetic_docs // 4)
        rows = make_corpus(n, seed=seed + (0 if split == "train" else 1))
        validate_rows(rows, f"synthetic:{split}", columns)
        return datasets.Dataset.from_list(rows)
    if dataset in HUB_NAMES:
        if split not in HUB_SPLITS:
            raise DataError(f"{dataset}: unknown split {split!r}; BillSum has {list(HUB_SPLITS)}")
        ds = _from_hub(HUB_NAMES[dataset], split)
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            raise DataError(f"{dataset}[{split}]: missing column(s) {missing}")
        return ds
    # Any other hub id: load it and check columns, for users with their own dataset repos.
    ds = _from_hub(dataset, split)
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(f"{dataset}[{split}]: missing column(s) {missing}")
    return ds


def _from_hub(name: str, split: str) -> datasets.Dataset:
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as e:  # ConnectionError offline, DatasetNotFoundError, ...
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        raise DataError(f"{name!r} split {split!r}: cannot load it from the Hugging Face hub ({type(e).__name__}"
                        f"{': ' + msg if msg else ''}); offline, give a local JSONL/CSV/parquet file or a directory "
                        f"holding <split>.jsonl, e.g. data.dataset=/data/billsum") from None


def train_val_split(ds: datasets.Dataset, val_size: int, seed: int = 42) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Carve a fixed-seed validation set out of train (BillSum has no validation split)."""
    if val_size >= len(ds):
        raise DataError(f"data.val_size={val_size} must be smaller than the {len(ds)} rows of the training split")
    parts = ds.train_test_split(test_size=val_size, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def tokenize_fn(tokenizer, prefix: str, max_source_length: int, max_target_length: int):
    """A ``Dataset.map`` function: prefix + truncate inputs; labels truncated summaries."""

    def fn(batch: dict) -> dict:
        enc = tokenizer([prefix + t for t in batch["text"]], max_length=max_source_length, truncation=True)
        labels = tokenizer(text_target=batch["summary"], max_length=max_target_length, truncation=True)
        enc["labels"] = labels["input_ids"]
        return enc

    return fn


def tokenize(ds: datasets.Dataset, tokenizer, prefix: str, max_source_length: int,
             max_target_length: int) -> datasets.Dataset:
    return ds.map(tokenize_fn(tokenizer, prefix, max_source_length, max_target_length), batched=True,
                  remove_columns=ds.column_names, desc="tokenize")

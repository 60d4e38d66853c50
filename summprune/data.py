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
    if suffix == ".csv":
        return _read_csv(path)
    import pandas as pd

    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise DataError(f"{path}: unsupported file type {suffix!r}; use one of {list(SUFFIXES)}")
    except (UnicodeDecodeError, ValueError, OSError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: cannot read: {e}") from None
    return df.to_dict(orient="records")


def _read_csv(path: Path) -> list[dict]:
    """A CSV's rows as ``{column: str}`` (empty fields stay ""), parsed by the package's one CSV
    parser. A row with another number of fields than the header is an error naming its line:
    pandas took one extra field on the first row as an index column and shifted every field."""
    from .io.files import CsvError, csv_rows

    try:
        # utf-8-sig: a byte-order mark (Excel) is not part of the first column's name
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        rows = list(csv_rows(text, path))
    except CsvError as e:
        raise DataError(str(e)) from None
    if not rows:
        return []
    header = rows[0][1]
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        raise DataError(f"{path}: the header (line 1) repeats column(s) {dups}")
    ragged = [(line, len(r)) for line, r in rows[1:] if len(r) != len(header)]
    if ragged:
        shown = ", ".join(f"line {line} has {n} field{'' if n == 1 else 's'}" for line, n in ragged[:10])
        more = f" ({len(ragged)} rows in all)" if len(ragged) > 10 else ""
        raise DataError(f"{path}: {shown}{more}, but the header (line 1) has {len(header)}: every row needs one "
                        "field per column (quote a field that holds a comma)")
    return [dict(zip(header, r)) for _, r in rows[1:]]


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


class HubError(DataError):
    """A data set named by its hub id cannot be loaded (offline, unknown name). The message ends
    by saying to pass local files; a caller adds its own option's spelling."""


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be reached, found in at most about ``timeout`` seconds, or
    None if it may be reachable. Offline, ``datasets`` otherwise spends ~30 s on retries before it
    says so. With a proxy set in the environment a direct connection proves nothing: None."""
    import os
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:  # socket.gaierror (no DNS), timeout, connection refused
        return f"{host}:{port}: {e.strerror or e}"


def _from_hub(name: str, split: str) -> datasets.Dataset:
    from huggingface_hub import constants

    local_hint = "offline, give a local JSONL/CSV/parquet file or a directory holding <split>.jsonl"
    # HF_HUB_OFFLINE=1: datasets reads its local cache only, and fails fast if it is not there.
    if not constants.HF_HUB_OFFLINE:
        why = hub_unreachable()
        if why is not None:
            raise HubError(f"{name!r} split {split!r}: the Hugging Face hub is unreachable ({why}; with "
                           f"HF_HUB_OFFLINE=1 a copy in the Hugging Face cache is read instead); {local_hint}")
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as e:  # ConnectionError offline, DatasetNotFoundError, ...
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        raise HubError(f"{name!r} split {split!r}: cannot load it from the Hugging Face hub ({type(e).__name__}"
                       f"{': ' + msg if msg else ''}); {local_hint}") from None


def train_val_split(ds: datasets.Dataset, val_size: int, seed: int = 42) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Carve a fixed-seed validation set out of train (BillSum has no validation split)."""
    if val_size < 1 or val_size >= len(ds):
        hint = f"; lower data.val_size (e.g. data.val_size={max(1, len(ds) // 10)})" if len(ds) > 1 else ""
        raise DataError(f"data.val_size={val_size} must be smaller than the {len(ds)} rows of the training split "
                        f"and at least 1{hint}")
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


def prefix_tokens(tokenizer, prefix: str) -> int:
    """Tokens ``prefix`` takes in every input: its own plus the special tokens the tokenizer adds
    (T5: the end-of-sequence token), which truncation keeps too."""
    return len(tokenizer(prefix, add_special_tokens=False)["input_ids"]) + tokenizer.num_special_tokens_to_add()


def check_prefix_fits(tokenizer, prefix: str, max_source_length: int, prefix_label: str | None = None,
                      length_label: str | None = None) -> None:
    """DataError unless ``prefix`` leaves room for the document within ``max_source_length``
    tokens (truncation would otherwise cut every document away, silently). The labels name
    where the two values came from (default: the config keys)."""
    n = prefix_tokens(tokenizer, prefix)
    if n >= max_source_length:
        prefix_label = prefix_label or f"data.prefix={prefix!r}"
        length_label = length_label or f"data.max_source_length={max_source_length}"
        raise DataError(f"{prefix_label} takes {n} tokens (end-of-sequence token included), which leaves no room "
                        f"for the document within {length_label} input tokens: shorten the prefix or allow more "
                        "input tokens")


def tokenize(ds: datasets.Dataset, tokenizer, prefix: str, max_source_length: int,
             max_target_length: int) -> datasets.Dataset:
    check_prefix_fits(tokenizer, prefix, max_source_length)
    return ds.map(tokenize_fn(tokenizer, prefix, max_source_length, max_target_length), batched=True,
                  remove_columns=ds.column_names, desc="tokenize")

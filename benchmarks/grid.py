"""What the quality benchmarks share: the committed proxy, scoring, a resumable record store, and
seed statistics (mean, min-max, "beats" only where ranges do not overlap)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import proxy as P

ROOT = P.ROOT
PREFIX = P.PREFIX
DEFAULT_PROXY = P.DEFAULT_OUT
log = P.log


def load_proxy(proxy_dir: str | Path) -> tuple:
    """(model, tokenizer, meta, data) of the proxy in ``proxy_dir`` (``benchmarks/proxy.py``)."""
    from summprune.export import load_model
    from summprune.modeling import load_tokenizer

    d = Path(proxy_dir)
    if not (d / "proxy.json").is_file():
        raise SystemExit(f"no proxy in {d} (proxy.json missing): train it with `python benchmarks/proxy.py "
                         f"--out {d}` (about 45 min on 2 cores)")
    meta = json.loads((d / "proxy.json").read_text())
    # which proxy a record was measured on (settings hold it, so a retrained proxy redoes every cell)
    digest = hashlib.sha256((d / "compact.safetensors").read_bytes()).hexdigest()
    meta["sha256"] = digest[:16]  # the settings' key (a results file's cells compare on it)
    meta["sha256_full"] = digest  # what a record names the proxy by
    return load_model(d).eval(), load_tokenizer(d), meta, P.splits(meta)


def score(model, tok, rows: list[dict], max_source_length: int, batch_size: int = 32) -> dict:
    """Greedy, max length 128 (the course's decoding) on ``rows``: course score and ROUGE-Lsum."""
    from summprune.metrics import kaggle_score, rouge

    t = time.time()
    preds = P.generate(model.eval(), tok, [r["text"] for r in rows], max_source_length, batch_size)
    refs = [r["summary"] for r in rows]
    return {"kaggle_score": round(kaggle_score(preds, refs), 4), "rougeLsum": round(rouge(preds, refs)["rougeLsum"], 4),
            **P.copy_rates(preds, rows), "empty": sum(not p.strip() for p in preds),
            "eval_s": round(time.time() - t, 1), "example": preds[0]}


class Records:
    """``results.json`` as ``{"settings": ..., "records": [...], ...}``, written atomically after
    every record, so a stopped run resumes where it was. Records of other settings are not mixed
    in: a run with other settings starts a new file (the old one is kept as ``.old.json``), or,
    with ``strict`` (a merge, which must not start afresh), stops with an error."""

    def __init__(self, path: Path, settings: dict, fresh: bool = False, strict: bool = False):
        self.path = path
        self.data: dict = {}
        if path.is_file() and not fresh:
            data = json.loads(path.read_text())
            if data.get("settings") == settings:
                self.data = data
            elif strict:
                raise SystemExit(f"{path} was measured with other settings than these options give:\n"
                                 f"  {data.get('settings')}\n  {settings}")
            else:
                os.replace(path, path.with_suffix(".old.json"))
                log(f"{path}: other settings; kept as {path.with_suffix('.old.json').name}, starting afresh")
        self.data["settings"] = settings
        self.data.setdefault("records", [])

    @property
    def records(self) -> list[dict]:
        return self.data["records"]

    def find(self, **key) -> dict | None:
        for r in self.records:
            if all(r.get(k) == v for k, v in key.items()):
                return r
        return None

    def merge(self, path: str | Path, key: tuple[str, ...]) -> int:
        """Append the records of another ``results.json`` (a part of the grid run by another
        process with its own ``--out``); returns how many were new. Its settings must be these;
        a record already here (same ``key`` fields) is skipped if it is the same measurement and
        refused if it differs (two processes must not both have measured a cell)."""
        path = Path(path)
        if not path.is_file():
            raise SystemExit(f"--merge: {path} does not exist")
        other = json.loads(path.read_text())
        if other.get("settings") != self.data["settings"]:
            raise SystemExit(f"--merge: {path} was measured with other settings than {self.path}:\n"
                             f"  {other.get('settings')}\n  {self.data['settings']}")
        have = {tuple(r.get(k) for k in key): r for r in self.records}
        new = 0
        for r in other.get("records", []):
            k = tuple(r.get(f) for f in key)
            if k in have:
                if have[k] != r:
                    raise SystemExit(f"--merge: {path} and {self.path} hold different records for {dict(zip(key, k))}")
                continue
            have[k] = r
            self.records.append(r)
            new += 1
        # the part's commands join this file's (each measured some of the records)
        self.data.setdefault("commands", []).extend(c for c in other.get("commands", [])
                                                    if c not in self.data.get("commands", []))
        for c, v in other.get("versions_by_command", {}).items():  # and what each ran on
            self.data.setdefault("versions_by_command", {}).setdefault(c, v)
        for k, v in other.items():  # e.g. "dense": the same proxy and rows give the same scores
            self.data.setdefault(k, v)
        self.save()
        return new

    def add(self, rec: dict) -> None:
        self.records.append(rec)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def stats(values: list[float]) -> dict:
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(s: dict | None, digits: int = 4) -> str:
    if s is None:
        return "-"
    return f"{s['mean']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def verdict(a: dict, b: dict) -> str:
    """'beats' / 'loses to' only where the min-max ranges do not overlap (and both have >= 3
    seeds); else 'ties'."""
    if a["n"] < 3 or b["n"] < 3:
        return "too few seeds"
    if a["min"] > b["max"]:
        return "beats"
    if a["max"] < b["min"]:
        return "loses to"
    return "ties"

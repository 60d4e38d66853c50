"""What the quality benchmarks share: the base model they prune (the committed synthetic proxy or
the yardstick), scoring, a resumable record store, and seed statistics (mean, min-max, "beats"
only where ranges do not overlap)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import proxy as P

ROOT = P.ROOT
PREFIX = P.PREFIX
DEFAULT_PROXY = P.DEFAULT_OUT
log = P.log


KINDS = {"proxy.json": "proxy", "yardstick.json": "yardstick"}
#: what a page calls each base
LABELS = {"proxy": "synthetic proxy", "yardstick": "yardstick"}
DEFAULT_YARDSTICK = ROOT / "docs" / "results" / "yardstick"
#: where benchmarks/yardstick.py caches the corpus it built (``--work``'s ``corpus/``)
DEFAULT_CORPUS = ROOT / "runs" / "yardstick" / "corpus"


def _digest(d: Path, meta: dict) -> None:
    # which base a record was measured on (settings hold it, so a retrained base redoes every cell)
    digest = hashlib.sha256((d / "compact.safetensors").read_bytes()).hexdigest()
    meta["sha256"] = digest[:16]  # the settings' key (a results file's cells compare on it)
    meta["sha256_full"] = digest  # what a record names the base by


def default_out(name: str, base_dir: str | Path) -> Path:
    """A benchmark's default ``--out``: ``docs/results/<name>`` on the proxy (where its committed
    results are), ``docs/results/<name>_yardstick`` on the yardstick, so that a yardstick run never
    sets the proxy's results aside."""
    yard = (Path(base_dir) / "yardstick.json").is_file()
    return ROOT / "docs" / "results" / (f"{name}_yardstick" if yard else name)


def load_base(base_dir: str | Path, corpus_dir: str | Path | None = None) -> tuple:
    """(model, tokenizer, meta, data) of the base model in ``base_dir``: the synthetic proxy
    (``proxy.json``, ``benchmarks/proxy.py``) or the yardstick (``yardstick.json``,
    ``benchmarks/yardstick.py``). ``data`` = ``{"train", "val", "eval"}`` row lists (``text``,
    ``summary``); ``meta`` carries ``kind``, ``prefix``, ``max_source_length``, ``params``, ``steps``
    and ``sha256``/``sha256_full`` of ``compact.safetensors``. ``corpus_dir``: the yardstick's
    corpus (see ``yardstick_data``); ignored for the proxy."""
    d = Path(base_dir)
    found = [k for k in KINDS if (d / k).is_file()]
    if len(found) != 1:
        raise SystemExit(f"{d}: not a base model directory ({'both' if found else 'neither'} proxy.json "
                         f"{'and' if found else 'nor'} yardstick.json): make one with `python benchmarks/proxy.py "
                         f"--out {d}` or `python benchmarks/yardstick.py --out {d}`")
    kind = KINDS[found[0]]
    return load_proxy(d) if kind == "proxy" else load_yardstick(d, corpus_dir)


def load_proxy(proxy_dir: str | Path) -> tuple:
    """(model, tokenizer, meta, data) of the proxy in ``proxy_dir`` (``benchmarks/proxy.py``)."""
    from summprune.export import load_model
    from summprune.modeling import load_tokenizer

    d = Path(proxy_dir)
    if not (d / "proxy.json").is_file():
        raise SystemExit(f"no proxy in {d} (proxy.json missing): train it with `python benchmarks/proxy.py "
                         f"--out {d}` (about 45 min on 2 cores)")
    meta = json.loads((d / "proxy.json").read_text())
    _digest(d, meta)
    meta["kind"] = "proxy"
    meta.setdefault("prefix", PREFIX)  # proxy.py trains and generates with this one (proxy.json predates the key)
    return load_model(d).eval(), load_tokenizer(d), meta, P.splits(meta)


def load_yardstick(yardstick_dir: str | Path, corpus_dir: str | Path | None = None) -> tuple:
    """(model, tokenizer, meta, data) of the yardstick in ``yardstick_dir``: train / val = the
    corpus's pairs (``yardstick_data``), eval = the first ``eval_docs`` rows of ``test.jsonl``."""
    from summprune.export import load_model
    from summprune.modeling import load_tokenizer

    d = Path(yardstick_dir)
    for f in ("yardstick.json", "test.jsonl", "compact.safetensors"):
        if not (d / f).is_file():
            raise SystemExit(f"no yardstick in {d} ({f} missing): make it with `python benchmarks/yardstick.py "
                             f"--out {d}`")
    meta = json.loads((d / "yardstick.json").read_text())
    missing = [k for k in ("prefix", "max_source_length", "max_target_length", "eval_docs", "params", "finetune", "corpus")
               if k not in meta]
    if missing:
        raise SystemExit(f"{d / 'yardstick.json'}: missing {', '.join(missing)}")
    _digest(d, meta)
    meta["kind"] = "yardstick"
    meta["steps"] = meta["finetune"]["steps"]  # the fine-tuning that made the model (pretraining is apart)
    test = []
    for i, line in enumerate((d / "test.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"{d / 'test.jsonl'}: row {i} is not JSON ({e})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not isinstance(row.get("summary"), str):
            raise SystemExit(f"{d / 'test.jsonl'}: row {i} has no text and summary strings")
        test.append(row)
    corpus = yardstick_data(meta["corpus"], DEFAULT_CORPUS if corpus_dir is None else Path(corpus_dir),
                            source=d / "yardstick.json")
    # test.jsonl is the corpus's test split as written: an edited file would score other pairs
    # under the same hashes
    for i, (row, pair) in enumerate(zip(test, corpus["test"]), 1):
        if (row["text"], row["summary"]) != (pair["text"], pair["summary"]):
            raise SystemExit(f"{d / 'test.jsonl'}: row {i} is not the corpus's held-out pair {pair.get('id')}")
    if len(test) != len(corpus["test"]):
        raise SystemExit(f"{d / 'test.jsonl'}: {len(test)} rows, the corpus holds {len(corpus['test'])} held-out pairs")
    data = {"train": corpus["train"], "val": corpus["val"], "eval": test[: meta["eval_docs"]]}
    return load_model(d).eval(), load_tokenizer(d), meta, data


def yardstick_data(recorded: dict, corpus_dir: Path, source: Path | str = "yardstick.json") -> dict:
    """The corpus the yardstick was fine-tuned on (its pairs are not committed): ``corpus_dir``'s
    (``save_corpus``'s files, e.g. ``benchmarks/yardstick.py``'s cache ``runs/yardstick/corpus``),
    else rebuilt from the installed distributions ``recorded["versions"]`` names, in its order
    (the order the deduplication saw them in), and saved there. Refused unless its
    ``content_hash`` is ``recorded["content_hash"]``."""
    from summprune.corpus import build_corpus, load_corpus, save_corpus

    want = recorded["content_hash"]
    if (corpus_dir / "corpus.json").is_file():
        try:
            corpus = load_corpus(corpus_dir)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        how = f"the corpus in {corpus_dir}"
    else:
        versions = recorded.get("versions") or {}
        names = [n for n in versions if n != "python-stdlib"]
        log(f"rebuilding the yardstick's corpus from {len(names)} installed distributions"
            f"{' and the standard library' if 'python-stdlib' in versions else ''} (about 2 minutes) into {corpus_dir}")
        from importlib.metadata import PackageNotFoundError

        try:
            corpus = build_corpus(names, stdlib="python-stdlib" in versions, progress=True)
        except PackageNotFoundError as e:
            raise SystemExit(f"{source} names distribution {e} in corpus.versions, which is not installed here: "
                             "install the pinned requirements, or point --corpus at the corpus folder "
                             "benchmarks/yardstick.py built") from None
        how = "the corpus rebuilt from this install"
        if corpus["content_hash"] == want:
            # written whole in a folder of its own, then renamed into place: two benchmarks started
            # together both rebuild, and the second rename finds the first one's (identical) corpus
            corpus_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=corpus_dir.name + ".", dir=corpus_dir.parent))
            save_corpus(corpus, tmp)
            try:
                os.rename(tmp, corpus_dir)
            except OSError:
                shutil.rmtree(tmp)
    if corpus["content_hash"] != want:
        differ = {n: (v, corpus["versions"].get(n)) for n, v in (recorded.get("versions") or {}).items()
                  if corpus["versions"].get(n) != v}
        raise SystemExit(
            f"{how} is not the one the yardstick was fine-tuned on: content_hash {corpus['content_hash'][:12]} != "
            f"{want[:12]} recorded in {source}"
            + (f"; versions (recorded, here): {differ}" if differ else "")
            + ". Install the pinned requirements (the same Python), or point --corpus at the corpus folder "
              "benchmarks/yardstick.py built (its --work's corpus/).")
    return corpus


def base_settings(meta: dict) -> dict:
    """The base's part of a benchmark's settings: ``proxy_sha256`` / ``proxy_steps`` /
    ``proxy_params`` for the proxy (the keys every committed results file holds, so their cells
    stay valid), ``yardstick_*`` for the yardstick."""
    k = meta["kind"]
    return {f"{k}_sha256": meta["sha256"], f"{k}_steps": meta["steps"], f"{k}_params": meta["params"]}


def base_record(meta: dict, base_dir: str | Path) -> dict:
    """What a results file says of its base: kind, directory, full sha256, parameters, steps (and
    the yardstick's corpus hash)."""
    d = Path(base_dir).resolve()
    try:
        where = str(d.relative_to(ROOT))
    except ValueError:
        where = str(base_dir)
    rec = {"kind": meta["kind"], "dir": where, "sha256": meta["sha256_full"], "params": meta["params"],
           "steps": meta["steps"], "prefix": meta["prefix"], "max_source_length": meta["max_source_length"],
           "max_target_length": meta["max_target_length"]}
    if meta["kind"] == "yardstick":
        rec["corpus_sha256"] = meta["corpus"]["content_hash"]
    return rec


def yardstick_checks(meta: dict) -> dict:
    """The yardstick's fair-yardstick checks as ``yardstick.json`` records them (what a results
    file carries beside the base's hash; ``{}`` if the file holds none)."""
    c = meta.get("checks") or {}
    s = c.get("stored_model") or {}
    return {k: v for k, v in {"course_score": s.get("course_score"), "swapped_over_own": s.get("swapped_over_own"),
                              "docs": s.get("docs"), "passes": c.get("passes")}.items() if v is not None}


def base_of(data: dict) -> dict:
    """A results file's base record (files written before ``base`` existed: the proxy's)."""
    return data.get("base") or {"kind": "proxy", **data.get("proxy", {})}


def to_dataset(rows: list[dict], tok, max_source_length: int, prefix: str, max_target_length: int):
    """``rows`` tokenized as the base was trained (``prefix`` + text, its source and target lengths:
    the proxy's 384 / 128, the yardstick's in yardstick.json)."""
    import datasets

    from summprune.data import tokenize

    ds = datasets.Dataset.from_list([{"text": r["text"], "summary": r["summary"]} for r in rows])
    return tokenize(ds, tok, prefix, max_source_length, max_target_length)


def generate(model, tok, texts: list[str], max_source_length: int, prefix: str, batch_size: int = 32) -> list[str]:
    """Greedy summaries, max length 128: the course's decoding, through the package's generator."""
    from summprune.generate import generate_summaries

    out = generate_summaries(model, tok, texts, prefix=prefix, max_source_length=max_source_length,
                             max_length=128, num_beams=1, batch_size=batch_size, progress=False)
    return [out[i] for i in range(len(texts))]


def score(model, tok, rows: list[dict], max_source_length: int, prefix: str, copy_rates: bool,
          batch_size: int = 32) -> dict:
    """Greedy, max length 128 (the course's decoding) on ``rows``: course score and ROUGE-Lsum,
    and with ``copy_rates`` (the proxy's bills: rows with a ``title``) the title / Act copy rates."""
    from summprune.metrics import kaggle_score, rouge

    t = time.time()
    preds = generate(model.eval(), tok, [r["text"] for r in rows], max_source_length, prefix, batch_size)
    refs = [r["summary"] for r in rows]
    return {"kaggle_score": round(kaggle_score(preds, refs), 4), "rougeLsum": round(rouge(preds, refs)["rougeLsum"], 4),
            **(P.copy_rates(preds, rows) if copy_rates else {}), "empty": sum(not p.strip() for p in preds),
            "eval_s": round(time.time() - t, 1), "example": preds[0]}


def score_base(model, tok, rows: list[dict], meta: dict, batch_size: int = 32) -> dict:
    """``score`` as the base ``meta`` describes reads and is read: its prefix, input length, and
    copy rates for the proxy only."""
    return score(model, tok, rows, meta["max_source_length"], meta["prefix"], meta["kind"] == "proxy", batch_size)


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


def add_base_arguments(p, bench: str, what: str) -> None:
    """``--base`` (alias ``--proxy``), ``--corpus`` and ``--out`` of a benchmark that trains on a base
    model: the synthetic proxy by default, or the yardstick; ``what`` says what the base is to it."""
    p.add_argument("--base", "--proxy", dest="base", default=str(DEFAULT_PROXY),
                   help=f"{what}: a synthetic proxy directory (benchmarks/proxy.py, the default) or the yardstick "
                        "(docs/results/yardstick, benchmarks/yardstick.py)")
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS),
                   help="the yardstick's corpus folder (benchmarks/yardstick.py's --work corpus/); rebuilt from this "
                        "install and saved there if absent; must match yardstick.json's content_hash")
    p.add_argument("--out", default=None,
                   help=f"results folder (default: docs/results/{bench}, or docs/results/{bench}_yardstick when "
                        "--base is the yardstick)")

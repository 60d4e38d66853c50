"""A real-text corpus built from the docstrings of installed Python packages: the yardstick's data.

No t5-small weights or BillSum exist on the machines this project is built on, but real English
does: the docstrings of the packages ``requirements.txt`` pins and of the standard library. This
module turns them, deterministically, into

* a **summarization task**, "docstring summary": input = the object's qualified name, its
  signature and its docstring after the first paragraph; target = the first paragraph;
* **pretraining prose**: every docstring and comment block of the training packages.

Files are read with ``ast`` (nothing is imported or run), in sorted order, so the same pinned
install gives the same corpus; ``content_hash`` records it. Pairs are split by top-level package
(``numpy``, ``json``...) so the held-out packages are never seen in pretraining or fine-tuning.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

#: Limits of a pair (in words): a target shorter than 5 words is a label ("Returns the.", "Deprecated."),
#: longer than 60 is an essay; an input must hold at least 30 words of description to summarise.
MIN_TARGET_WORDS, MAX_TARGET_WORDS, MIN_INPUT_WORDS = 5, 60, 30
#: An input is cut at a word boundary after this many characters: the model reads at most 256
#: tokens (~1,100 characters of docstring prose), and the held-out file stays under 2 MB.
MAX_INPUT_CHARS = 1500
#: Stdlib parts that are tests, demos or a second copy of another module's docs.
_STDLIB_SKIP = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "dist-packages",
                "__pycache__", "ensurepip", "pydoc_data", "tkinter", "config-3"}
_RULE = re.compile(r"([-=~^*_#+])\1{2,}")  # RST/numpydoc underlines: "----------"
_WS = re.compile(r"\s+")


def pinned_requirements(path: str | Path) -> list[tuple[str, str]]:
    """``(name, version)`` of every ``name==version`` line of a requirements file, in file order."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def _skip_part(part: str) -> bool:
    return part in _STDLIB_SKIP or part.endswith((".dist-info", ".egg-info", ".data")) or part == ".."


def distribution_sources(name: str) -> tuple[str, list[tuple[str, Path]]]:
    """The installed version of distribution ``name`` and its ``(top-level package, file)`` pairs
    for every ``.py`` file it installed (tests and vendored copies left out), sorted."""
    dist = metadata.distribution(name)
    files = []
    for f in dist.files or ():
        parts = Path(str(f)).parts
        if not str(f).endswith(".py") or any(_skip_part(p) for p in parts) or "_vendor" in parts:
            continue
        top = parts[0][:-3] if len(parts) == 1 else parts[0]
        files.append((top, Path(str(dist.locate_file(f)))))
    return dist.version, sorted(set(files), key=lambda x: (x[0], str(x[1])))


def stdlib_sources(modules: Iterable[str] | None = None) -> list[tuple[str, Path]]:
    """``(top-level module, file)`` of the standard library's ``.py`` files, sorted; ``modules``
    keeps only those top-level names (a small slice for tests)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    keep = set(modules) if modules is not None else None
    out = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root).parts
        if any(_skip_part(x) for x in rel):
            continue
        top = rel[0][:-3] if len(rel) == 1 else rel[0]
        if keep is not None and top not in keep:
            continue
        out.append((top, p))
    return sorted(out, key=lambda x: (x[0], str(x[1])))


def normalise(text: str) -> str:
    """Whitespace collapsed and RST underlines dropped: how texts are stored."""
    return _WS.sub(" ", _RULE.sub(" ", text)).strip()


def _key(text: str) -> str:
    """What two near-identical texts share: lower-case words, digits and punctuation dropped."""
    return " ".join(re.findall(r"[a-z]+", text.lower()))


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0]


def _signature(node: ast.AST) -> str:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = ast.unparse(node.args)
        return f"({_cut(args, 200)})"
    for item in getattr(node, "body", []):  # a class: its constructor's signature
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "__init__":
            args = ast.unparse(item.args)
            return f"({_cut(args.removeprefix('self, ').removeprefix('self'), 200)})"
    return ""


def _objects(tree: ast.Module, module: str) -> Iterator[tuple[str, ast.AST]]:
    """Every class and function with its qualified name, depth first in source order."""
    stack = [(module, tree)]
    while stack:
        prefix, node = stack.pop()
        children = [c for c in ast.iter_child_nodes(node)
                    if isinstance(c, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        for c in children:
            yield f"{prefix}.{c.name}", c
        stack.extend((f"{prefix}.{c.name}", c) for c in reversed(children))


_COMMENT_BLOCK = re.compile(r"(?:^[ \t]*#(?!!)[^\n]*\n){3,}", re.M)


@dataclass
class FileText:
    """What one source file gives: its pairs and its prose."""
    pairs: list[dict] = field(default_factory=list)
    prose: list[str] = field(default_factory=list)


def read_file(path: Path, module: str, package: str) -> FileText:
    """Pairs and prose of one ``.py`` file (a file that does not parse gives nothing)."""
    try:
        src = path.read_text(encoding="utf-8")
        tree = ast.parse(src)
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return FileText()
    out = FileText()
    doc = ast.get_docstring(tree, clean=True)
    if doc:
        out.prose.append(normalise(doc))
    for qualname, node in _objects(tree, module):
        doc = ast.get_docstring(node, clean=True)
        if not doc:
            continue
        out.prose.append(normalise(doc))
        paras = [p for p in re.split(r"\n\s*\n", doc.strip()) if p.strip()]
        if len(paras) < 2:
            continue
        target = normalise(paras[0])
        body = normalise("\n\n".join(paras[1:]))
        words = len(target.split())
        if not (MIN_TARGET_WORDS <= words <= MAX_TARGET_WORDS) or not target[0].isalpha():
            continue
        if target.endswith(":") or ">>>" in target or target.startswith(".."):
            continue
        if len(body.split()) < MIN_INPUT_WORDS:
            continue
        text = _cut(f"{qualname}{_signature(node)}: {body}", MAX_INPUT_CHARS)
        if _key(target) in _key(text):  # the target is in the input: nothing to summarise
            continue
        out.pairs.append({"id": qualname, "package": package, "text": text, "summary": target})
    for block in _COMMENT_BLOCK.findall(src):
        lines = [ln.strip().lstrip("#").strip() for ln in block.splitlines()]
        prose = normalise(" ".join(lines))
        if len(prose.split()) >= 20 and not prose.lower().startswith(("copyright", "licensed", "pylint")):
            out.prose.append(prose)
    return out


def _module_name(package: str, path: Path) -> str:
    """``numpy/linalg/_linalg.py`` -> ``numpy.linalg._linalg`` (from the top-level package down)."""
    parts = list(path.with_suffix("").parts)
    idx = len(parts) - 1 - parts[::-1].index(package) if package in parts else len(parts) - 1
    mod = parts[idx:]
    if mod[-1] == "__init__":
        mod = mod[:-1]
    return ".".join(mod) or package


def split_packages(counts: dict[str, int], test_frac: float, val_frac: float,
                   max_share: float = 0.12) -> dict[str, str]:
    """Package -> ``train``/``val``/``test``: packages in the order of their name's sha256 fill the
    test split to ``test_frac`` of the pairs, then val to ``val_frac``; a package holding more than
    ``max_share`` of all pairs stays in train (one large library must not be the whole test set)."""
    total = sum(counts.values())
    out, got = {}, {"test": 0, "val": 0}
    for name in sorted(counts, key=lambda n: hashlib.sha256(n.encode()).hexdigest()):
        n = counts[name]
        split = "train"
        if n <= max_share * total:
            if got["test"] < test_frac * total:
                split = "test"
            elif got["val"] < val_frac * total:
                split = "val"
        if split != "train":
            got[split] += n
        out[name] = split
    return out


def build_corpus(distributions: Iterable[str], *, stdlib: bool | Iterable[str] = True,
                 test_frac: float = 0.1, val_frac: float = 0.03, progress: bool = False) -> dict:
    """The corpus of the named installed distributions (and the standard library, or the named
    stdlib modules): ``{"train", "val", "test"}`` pair lists, ``prose`` (training packages only),
    ``packages`` (package -> split), ``versions`` and ``content_hash``.

    Deduplication: a pair whose target (lower-case words) or whose description (after the
    qualified name) was seen before is dropped, so a docstring copied between classes or
    libraries counts once; pairs are visited in sorted order, so the same install keeps the same
    ones. Prose that holds a held-out target is dropped from pretraining.
    """
    sources: list[tuple[str, Path]] = []
    versions = {}
    for name in distributions:
        version, files = distribution_sources(name)
        versions[name] = version
        sources += files
    if stdlib:
        mods = None if stdlib is True else list(stdlib)
        versions["python-stdlib"] = ".".join(map(str, sys.version_info[:3]))
        sources += stdlib_sources(mods)
    seen_pkg_file = set()
    pairs, prose_by_pkg = [], {}
    it = sources
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(sources, desc="reading sources", unit="file")
    seen_t, seen_d = set(), set()
    for package, path in it:
        if (package, path) in seen_pkg_file:
            continue
        seen_pkg_file.add((package, path))
        got = read_file(path, _module_name(package, path), package)
        prose_by_pkg.setdefault(package, []).extend(got.prose)
        for p in got.pairs:
            kt, kd = _key(p["summary"]), _key(p["text"].split(": ", 1)[-1])[:300]
            if kt in seen_t or kd in seen_d:
                continue
            seen_t.add(kt)
            seen_d.add(kd)
            pairs.append(p)
    counts = {}
    for p in pairs:
        counts[p["package"]] = counts.get(p["package"], 0) + 1
    split_of = split_packages(counts, test_frac, val_frac)
    out = {"train": [], "val": [], "test": []}
    for p in pairs:
        out[split_of[p["package"]]].append(p)
    # a held-out target in the prose would leak: a docstring that holds one begins with it
    held_out: dict[str, list[str]] = {}
    for split in ("val", "test"):
        for p in out[split]:
            k = _key(p["summary"])
            held_out.setdefault(" ".join(k.split()[:MIN_TARGET_WORDS]), []).append(k)
    prose, seen_prose = [], set()
    for package in sorted(prose_by_pkg):
        if split_of.get(package, "train") != "train":
            continue
        for t in prose_by_pkg[package]:
            k = _key(t)
            if not k or k in seen_prose:
                continue
            if any(k.startswith(h) for h in held_out.get(" ".join(k.split()[:MIN_TARGET_WORDS]), ())):
                continue
            seen_prose.add(k)
            prose.append(t)
    corpus = {**out, "prose": prose, "packages": dict(sorted(split_of.items())), "versions": versions}
    corpus["content_hash"] = content_hash(corpus)
    return corpus


def content_hash(corpus: dict) -> str:
    """sha256 of the corpus's texts and splits, in a canonical serialisation."""
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        for p in corpus[split]:
            h.update(json.dumps([split, p["id"], p["package"], p["text"], p["summary"]],
                                ensure_ascii=False).encode())
    for t in corpus["prose"]:
        h.update(b"\x00" + t.encode())
    return h.hexdigest()


def save_corpus(corpus: dict, folder: str | Path) -> Path:
    """``train/val/test.jsonl``, ``prose.txt`` (one text a line) and ``corpus.json`` (counts,
    packages, versions, hash) in ``folder``, each written to a temporary file and renamed."""
    import os

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, text: str) -> None:
        tmp = folder / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)

    for split in ("train", "val", "test"):
        write(f"{split}.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in corpus[split]))
    write("prose.txt", "".join(t + "\n" for t in corpus["prose"]))
    write("corpus.json", json.dumps(describe(corpus), indent=1) + "\n")
    return folder


def describe(corpus: dict) -> dict:
    return {"content_hash": corpus["content_hash"], "versions": corpus["versions"],
            "pairs": {s: len(corpus[s]) for s in ("train", "val", "test")},
            "prose_texts": len(corpus["prose"]), "prose_chars": sum(len(t) for t in corpus["prose"]),
            "packages": corpus["packages"]}


def load_corpus(folder: str | Path) -> dict:
    """The corpus ``save_corpus`` wrote; its hash is checked against ``corpus.json``."""
    folder = Path(folder)
    meta = json.loads((folder / "corpus.json").read_text(encoding="utf-8"))
    corpus = {s: [json.loads(x) for x in (folder / f"{s}.jsonl").read_text(encoding="utf-8").splitlines() if x]
              for s in ("train", "val", "test")}
    corpus["prose"] = (folder / "prose.txt").read_text(encoding="utf-8").split("\n")[:-1]
    corpus["packages"], corpus["versions"] = meta["packages"], meta["versions"]
    got = content_hash(corpus)
    if got != meta["content_hash"]:
        raise ValueError(f"{folder}: the corpus files do not match corpus.json's content_hash "
                         f"({got[:12]} != {meta['content_hash'][:12]}); rebuild it")
    corpus["content_hash"] = got
    return corpus

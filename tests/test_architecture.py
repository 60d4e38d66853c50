"""The package's import graph stays a stack: no import circle, and no module importing from a layer
above its own. The graph is read with ``ast`` from every module of ``summprune/``, imports inside
functions and ``TYPE_CHECKING`` blocks included (lazy imports are how the old circles hid). The
layer order is the table in docs/architecture.md ("Layers"), read from there, so the page and the
check cannot disagree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "summprune"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


# --------------------------------------------------------------------------------------------
# the graph


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name (``summprune.io.files``; a package is its ``__init__``) -> file."""
    out = {}
    for p in sorted(package.rglob("*.py")):
        parts = list(p.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def _target(name: str, mods: dict[str, Path]) -> str | None:
    """The module of the package that importing ``name`` runs last (``a.b.c`` -> ``a.b`` when
    ``c`` is a name inside ``a.b``), None outside the package."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """``module -> {imported module of the package: line of the first such import}``, every
    ``import`` / ``from ... import`` statement anywhere in the file."""
    mods = modules(package)
    root = package.name
    graph: dict[str, dict[str, int]] = {}
    for mod, path in mods.items():
        here = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = here.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1])
                    src = f"{base}.{node.module}" if node.module else base
                else:
                    src = node.module or ""
                # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module
                names = [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src for a in node.names]
            for name in names:
                if name == root or name.startswith(root + "."):
                    t = _target(name, mods)
                    if t is not None and t != mod:
                        edges.setdefault(t, node.lineno)
        graph[mod] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One import circle (``[a, b, ..., a]``) for each group of modules that import each other
    (a strongly connected component of the graph), none when the graph is a stack."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def strong(m: str) -> None:  # Tarjan's algorithm
        index[m] = low[m] = len(index)
        stack.append(m)
        for t in graph.get(m, {}):
            if t not in index:
                strong(t)
                low[m] = min(low[m], low[t])
            elif t in stack:
                low[m] = min(low[m], index[t])
        if low[m] == index[m]:
            group = set()
            while True:
                t = stack.pop()
                group.add(t)
                if t == m:
                    break
            if len(group) > 1:
                groups.append(group)

    for m in sorted(graph):
        if m not in index:
            strong(m)
    cycles = []
    for group in sorted(groups, key=min):
        start = min(group)
        prev = {start: None}
        queue = [start]
        while queue:  # the shortest way from start back to itself, inside the group
            m = queue.pop(0)
            nxt = [t for t in sorted(graph.get(m, {})) if t in group]
            if start in nxt:
                path = [start]
                while m is not None:
                    path.append(m)
                    m = prev[m]
                cycles.append(path[::-1])
                break
            for t in nxt:
                if t not in prev:
                    prev[t] = m
                    queue.append(t)
    return cycles


def _describe(cycle: list[str], graph: dict[str, dict[str, int]], mods: dict[str, Path]) -> str:
    return "\n".join(f"  {a} imports {b} ({mods[a].relative_to(ROOT)}:{graph[a][b]})"
                     for a, b in zip(cycle, cycle[1:]))


# --------------------------------------------------------------------------------------------
# the layers, as docs/architecture.md draws them


def layers(text: str | None = None) -> list[tuple[str, list[str]]]:
    """``[(layer, [module patterns])]`` from the top layer down, read from the fenced block after
    the "## Layers" heading of docs/architecture.md: one line per layer, ``name  mod mod pkg.*``,
    names relative to ``summprune`` (``__init__`` = the package itself)."""
    text = ARCHITECTURE.read_text(encoding="utf-8") if text is None else text
    m = re.search(r"^## Layers\n.*?^```text\n(.*?)^```", text, re.S | re.M)
    assert m, f"{ARCHITECTURE}: no '## Layers' section with a ```text block (the layer table this test reads)"
    out = []
    for line in m.group(1).splitlines():
        if line.strip():
            name, *pats = line.split()
            out.append((name, pats))
    return out


def layer_of(mod: str, table: list[tuple[str, list[str]]]) -> tuple[int, str, bool]:
    """``(rank, layer, named)`` of a module: rank 0 = the bottom. A module the table does not name
    takes the layer of its package where the table has ``pkg.*`` (a new family module lands
    among the families), else the top layer (a new driver-side module may import anything;
    ``named`` False says so in a failure)."""
    rel = "__init__" if mod == "summprune" else mod[len("summprune."):]
    n = len(table)
    for i, (name, pats) in enumerate(table):
        if rel in pats:
            return n - 1 - i, name, True
    for i, (name, pats) in enumerate(table):
        if any(p.endswith(".*") and rel.startswith(p[:-1]) for p in pats):
            return n - 1 - i, name, True
    return n - 1, table[0][0], False


# --------------------------------------------------------------------------------------------
# the tests


def test_the_import_graph_sees_function_level_and_relative_imports(tmp_path):
    """The reader itself: a lazy import inside a function and a relative ``from . import`` are
    edges, a circle through them is found, and a name imported from a module is an edge to
    that module (not to a submodule that does not exist)."""
    pkg = tmp_path / "summprune"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from .sub import high\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "high.py").write_text("from ..low import f\nfrom summprune import low\n")
    g = import_graph(pkg)
    assert g["summprune.low"] == {"summprune.sub.high": 2}
    assert g["summprune.sub.high"] == {"summprune.low": 1}
    assert find_cycles(g) == [["summprune.low", "summprune.sub.high", "summprune.low"]]
    (pkg / "low.py").write_text("X = 1\n")
    assert find_cycles(import_graph(pkg)) == []


def test_no_import_circle():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, ("import circles (break each: move the shared piece down, pass it in as an argument, or "
                        "let the lower module hold a registry the upper one fills):\n"
                        + "\n\n".join(_describe(c, graph, modules()) for c in cycles))


def test_no_module_imports_from_a_layer_above_its_own():
    table = layers()
    graph = import_graph()
    mods = modules()
    bad = []
    for a, edges in sorted(graph.items()):
        ra, la, _ = layer_of(a, table)
        for b, line in sorted(edges.items()):
            rb, lb, named = layer_of(b, table)
            if rb > ra:
                why = "" if named else f" ({b} is in no layer of {ARCHITECTURE.name}: the top one by default)"
                bad.append(f"  {a} ({la}) imports {b} ({lb}) at {mods[a].relative_to(ROOT)}:{line}{why}")
    assert not bad, ("imports from a higher layer (docs/architecture.md, 'Layers', bottom last); move the "
                     "code down, pass it in as an argument, or register it from above:\n" + "\n".join(bad))


def test_the_layer_table_names_existing_modules_once():
    """A module renamed or removed leaves no stale line behind, and none is in two layers."""
    table = layers()
    names = {"__init__" if m == "summprune" else m[len("summprune."):] for m in modules()}
    seen: dict[str, str] = {}
    for layer, pats in table:
        for p in pats:
            assert p not in seen, f"{ARCHITECTURE.name}: {p} is in layers {seen[p]} and {layer}"
            seen[p] = layer
            if p.endswith(".*"):
                assert any(n.startswith(p[:-1]) for n in names), f"{ARCHITECTURE.name}: no module matches {p}"
            else:
                assert p in names, f"{ARCHITECTURE.name}: layer {layer} names {p}, which is no module of summprune/"


def test_the_layer_check_fails_on_an_upward_import():
    """The check can fail: a bottom-layer module importing the driver is reported."""
    table = [("top", ["pipeline"]), ("bottom", ["faults"])]
    assert layer_of("summprune.pipeline", table)[0] > layer_of("summprune.faults", table)[0]
    assert layer_of("summprune.newthing", table) == (1, "top", False)


def test_the_family_list_in_architecture_md_is_the_registry():
    """docs/architecture.md names the registered families; a family added to or removed from
    summprune.models without the page saying so fails here."""
    from summprune.models import family_of, supported_model_types

    text = ARCHITECTURE.read_text(encoding="utf-8")
    m = re.search(r"^Registered families: (.*)\.$", text, re.M)
    assert m, f"{ARCHITECTURE}: no line 'Registered families: a, b, c.'"
    named = [s.strip() for s in m.group(1).split(",")]
    assert named == sorted({family_of(t).name for t in supported_model_types()})


#: Choices dispatched by a registry or an enum (summprune.ties.TieMode, schedules.SCHEDULES,
#: allocate.ALLOCATIONS): the code asks the entry what it does and never compares the name.
DISPATCHED = ("tie_mode", "schedule", "allocation")

#: Comparisons known to remain, each with its reason; an entry that no longer matches fails, so
#: the list only shrinks. None remain.
PENDING: set[tuple[str, str]] = set()


def _string_comparisons(package: Path = PACKAGE) -> set[tuple[str, str, int]]:
    """``(file, choice, line)`` of every ``x == "..."`` / ``x != "..."`` / ``x in ("...", ...)``
    whose ``x`` is a name or attribute called one of :data:`DISPATCHED`."""
    out = set()
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            names = {s.id if isinstance(s, ast.Name) else s.attr for s in sides
                     if isinstance(s, (ast.Name, ast.Attribute))}
            literal = any(isinstance(s, ast.Constant) and isinstance(s.value, str)
                          or isinstance(s, (ast.Tuple, ast.List, ast.Set))
                          and any(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in s.elts)
                          for s in sides)
            for choice in names & set(DISPATCHED):
                if literal:
                    out.add((str(path.relative_to(package.parent)), choice, node.lineno))
    return out


def test_tie_modes_schedules_and_allocations_are_dispatched_not_compared(tmp_path):
    found = _string_comparisons()
    pending = {(f, c) for f, c, _ in found} & PENDING
    left = sorted(f"  {f}:{line}: {c} compared with a string" for f, c, line in found if (f, c) not in PENDING)
    assert not left, ("ask the registry entry or the TieMode what it does instead (summprune.ties, "
                      "schedules.SCHEDULES, allocate.ALLOCATIONS):\n" + "\n".join(left))
    assert pending == PENDING, f"no longer there, remove from PENDING: {sorted(PENDING - pending)}"
    # the reader finds one
    pkg = tmp_path / "summprune"
    pkg.mkdir()
    (pkg / "m.py").write_text("def f(cfg, tie_mode):\n    return cfg.allocation in ('auto',) or tie_mode != 'x'\n")
    assert {c for _, c, _ in _string_comparisons(pkg)} == {"allocation", "tie_mode"}


def test_low_modules_read_registries_the_modules_above_fill(tmp_path):
    """In a fresh interpreter: importing the config imports neither torch nor a method; the
    config's sections, the names that moved to summprune.methods and the formats' file names are
    all there at their first read (the loaders the package's __init__ adds), and a registry's
    loader runs once."""
    import os
    import subprocess
    import sys

    code = """
import sys
import summprune.config as C
assert "torch" not in sys.modules and "summprune.methods" not in sys.modules, "imported too much"
from summprune.config import GradualConfig, LAYER_SELECTIONS, StageConfig, StructuredConfig, expand_stages
from summprune.methods.gradual import GradualConfig as G
assert GradualConfig is G and LAYER_SELECTIONS == ("spread", "first")
assert {"stages", "gradual", "structured"} <= set(C.SECTIONS)
cfg = C.load_config(None, ["prune.gradual.target_nonzero_ratio=0.5", "export_format=compact"])
assert cfg.prune.gradual.target_nonzero_ratio == 0.5
from summprune.io.files import _model_file_names
assert {"compact.json", "compact.safetensors", "model.safetensors", "model_state_dict.pth", "checksums.json",
        "pruning.json", "config.json", "tokenizer.json"} <= _model_file_names()
from summprune.io.formats import FORMATS
assert {w for f in FORMATS.values() for w in f.weights} == {
    "model.safetensors", "model.safetensors.index.json", "compact.json", "model_state_dict.pth"}
try:
    C.no_such_name
except AttributeError as e:
    assert "no_such_name" in str(e)
else:
    raise AssertionError("an unknown name was found")
from summprune.registry import Registry
calls = []
r = Registry("test")
r.add_loader(lambda: (calls.append(1), r.__setitem__("a", 1)))
assert "a" in r and list(r) == ["a"] and r["a"] == 1 and calls == [1]
bad = Registry("failing")
bad.add_loader(lambda: 1 / 0)
for _ in range(2):  # a failed loader fails every read, never leaves a half-filled registry behind
    try:
        list(bad)
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("a failing loader was skipped")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]

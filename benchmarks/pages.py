"""What the benchmark scripts share that is not the proxy (grid.py): the results page every
benchmark writes beside its ``results.json`` (``README.md`` with the command, the settings, the
machine, the tables and the plots, so a re-run rewrites the page and no number on it is typed by
hand), and resolving a path given on the command line."""

from __future__ import annotations

import os
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def repo_path(p: str) -> Path:
    """A path as given (relative to cwd), else relative to the repository root."""
    path = Path(p).expanduser()
    if path.exists() or path.is_absolute():
        return path
    alt = REPO / path
    return alt if alt.exists() else path


def record_command(data: dict, script: str, argv: list[str] | None) -> None:
    """Add this invocation to ``data["commands"]``: every command that wrote into a results file,
    in order, so a file filled by several runs (parts, resumes, added cells) names each."""
    import shlex
    import sys

    cmd = f"python benchmarks/{script} " + shlex.join(argv if argv is not None else sys.argv[1:])
    if cmd not in data.setdefault("commands", []):
        data["commands"].append(cmd)
    data.setdefault("versions_by_command", {})[cmd] = versions()  # what this command ran on


def command_text(data: dict, default: str) -> str:
    """The page's command block: ``data``'s commands one per line (older files: ``command``)."""
    return "\n    ".join(data["commands"]) if data.get("commands") else data.get("command") or default


def versions() -> dict:
    """The versions of what the measurements ran on, as installed now (None: not installed)."""
    import platform
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(),
            **{n: version(n) for n in ("torch", "transformers", "ctranslate2", "datasets", "rapidfuzz")}}


def machine() -> dict:
    import time

    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d", time.gmtime())}


def write_readme(out: Path, title: str, script: str, command: str, body: str, *, images: tuple[str, ...] = (),
                 settings: dict | None = None, note: str = "", page_only: str | None = "--page-only",
                 source: str = "results.json") -> Path:
    """``out/README.md``: ``title``, the command that wrote it, ``settings``, ``body`` (markdown
    tables), the ``images`` present in ``out``, and a ``note``."""
    lines = [f"# {title}", "",
             f"Written by `benchmarks/{script}` from the `{source}` beside this page (a re-run"
             + (f", or `{page_only}` without measuring," if page_only else "") + " rewrites it). Command:", "",
             f"    {command}", ""]
    if settings:
        lines += ["Settings: " + "; ".join(f"{k} {v}" for k, v in settings.items()) + ".", ""]
    lines += [body.strip(), ""]
    for im in images:
        if (out / im).is_file():
            lines += [f"![{im}]({im})", ""]
    if note:
        lines += [note.strip(), ""]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path

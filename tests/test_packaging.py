"""The package installs outside this checkout: a wheel built from the repo holds every
subpackage, and installed non-editable into a fresh environment it imports every module and runs
the CLI (a fixed package list once shipped a wheel without summprune.methods and summprune.io)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_wheel_installed_non_editable_imports_every_module_and_runs_the_cli(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    (whl,) = wheels.glob("summprune-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    in_repo = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "summprune").rglob("*.py"))
    assert sorted(n for n in names if n.startswith("summprune/")) == in_repo

    # A fresh environment that sees the pinned dependencies of the running interpreter but not this
    # checkout's editable install. `venv --system-site-packages` is not that: run from inside a
    # virtualenv it exposes the *base* interpreter's site-packages, which may lack torch. So: a
    # venv without system packages, the wheel installed into it first (pip then sees no other
    # summprune to replace), and only then a .pth listing the folders the running interpreter
    # imports from (its sys.path: its site-packages, and whatever its own .pth files or a
    # --system-site-packages venv add), less any folder holding a summprune package (this checkout
    # on PYTHONPATH). Folders a .pth adds come after the venv's own site-packages, and their own
    # .pth files are not run: the running environment's editable finder stays inactive.
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(whl)], check=True,
                   capture_output=True, text=True, timeout=300)
    path_code = "import json, sys, sysconfig; print(json.dumps([sys.path, sysconfig.get_paths()['purelib']]))"
    ours, _ = json.loads(subprocess.run([sys.executable, "-c", path_code], cwd=tmp_path, check=True,
                                        capture_output=True, text=True, timeout=60).stdout)
    theirs, site_dir = json.loads(subprocess.run([str(py), "-c", path_code], cwd=tmp_path, check=True,
                                                 capture_output=True, text=True, timeout=60).stdout)
    extra = [d for d in ours if d and d not in theirs and Path(d).is_dir() and not (Path(d) / "summprune").exists()]
    (Path(site_dir) / "zz_running_env.pth").write_text("".join(f"{d}\n" for d in extra), encoding="utf-8")
    code = ("import importlib, pkgutil, summprune; "
            "mods = [m.name for m in pkgutil.walk_packages(summprune.__path__, 'summprune.')]; "
            "[importlib.import_module(m) for m in mods]; import torch, transformers; "
            "print(summprune.__file__); print(len(mods))")
    r = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    where, count = r.stdout.split()
    assert where.startswith(str(env_dir)) and int(count) == len(in_repo) - 1  # every module but __init__
    r = subprocess.run([str(py), "-m", "summprune", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "prune" in r.stdout, r.stderr[-2000:]

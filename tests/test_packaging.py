"""The package installs outside this checkout: a wheel built from the repo holds every
subpackage, and installed non-editable into a fresh environment it imports every module and runs
the CLI (a fixed package list once shipped a wheel without summprune.methods and summprune.io)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import ROOT


def test_wheel_installed_non_editable_imports_every_module_and_runs_the_cli(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    (whl,) = wheels.glob("summprune-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    in_repo = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "summprune").rglob("*.py"))
    assert sorted(n for n in names if n.startswith("summprune/")) == in_repo

    # a fresh environment that sees the pinned dependencies but not this checkout's editable install
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)], check=True, timeout=120)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(whl)], check=True,
                   capture_output=True, text=True, timeout=300)
    code = ("import importlib, pkgutil, summprune; "
            "mods = [m.name for m in pkgutil.walk_packages(summprune.__path__, 'summprune.')]; "
            "[importlib.import_module(m) for m in mods]; "
            "print(summprune.__file__); print(len(mods))")
    r = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    where, count = r.stdout.split()
    assert where.startswith(str(env_dir)) and int(count) == len(in_repo) - 1  # every module but __init__
    r = subprocess.run([str(py), "-m", "summprune", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "prune" in r.stdout, r.stderr[-2000:]

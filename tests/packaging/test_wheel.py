"""The wheel builds from the source tree and, installed on its own, works (package data included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SMOKE = """
import json, sys
from importlib import resources
from pathlib import Path
import aft
from aft.data import load_split
site = Path(sys.argv[1]).resolve()
assert Path(aft.__file__).resolve().is_relative_to(site), aft.__file__
root = resources.files("aft")
assert root.joinpath("py.typed").is_file()
assert sorted(p.name for p in root.joinpath("experiments/suites").iterdir() if p.name.endswith(".yaml"))
assert any(p.name.endswith(".json") for p in root.joinpath("data/splits").iterdir())
print(json.dumps({"digits": len(load_split("digits", "train")), "version": aft.__version__}))
"""


@pytest.mark.slow
def test_wheel_builds_installs_and_runs(tmp_path):
    src = tmp_path / "src-tree"  # build from a copy: no build/ or egg-info in the worktree
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(dist)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(dist.glob("aft-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert "aft/py.typed" in names and "aft/data/bundled/digits.csv.gz" in names
    licenses = [n for n in names if n.endswith("/LICENSE") and ".dist-info/" in n]
    assert licenses, sorted(n for n in names if ".dist-info/" in n)
    with zipfile.ZipFile(wheel) as zf:
        assert "Apache License" in zf.read(licenses[0]).decode()

    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                              "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    # the dependencies (torch, numpy...) come from this interpreter; aft only from the installed wheel
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    smoke = subprocess.run([sys.executable, "-c", SMOKE, str(site)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert smoke.returncode == 0, smoke.stderr[-2000:]
    assert '"digits": 1438' in smoke.stdout
    version = subprocess.run([sys.executable, "-m", "aft", "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == "aft 0.1.0", version.stderr
    assert (site / "bin" / "aft").is_file()  # the console script

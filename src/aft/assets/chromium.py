"""Debian's headless Chromium as an aft asset (for the report's browser test), and a small runner.

The asset is ``chromium-headless-shell`` at a pinned Debian version plus whichever of its
dependencies this machine lacks, all fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x`` into the aft cache (no root, nothing installed system-wide). Only ``usr/lib`` is kept;
symlinks are replaced by the files they point to, and ``launch.json`` names the binary and the
library folders to put on ``LD_LIBRARY_PATH``. The dependency set depends on the machine, so the
asset's tree is not pinned; the package version is.

    >>> from aft.assets.chromium import find_chromium
    >>> browser = find_chromium()          # the cached asset, else chromium on PATH, else None
    >>> dom = browser.dump_dom("file:///tmp/report/index.html", width=1200)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aft.assets._run import require_tool, run_tool
from aft.errors import AssetError

CHROMIUM_PACKAGE = "chromium-headless-shell"
CHROMIUM_VERSION = "150.0.7871.100-1~deb12u1"
LAUNCH_FILE = "launch.json"
BINARY = "usr/lib/chromium/chromium-headless-shell"
_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+)")


def _closure(package: str, version: str, fix: str) -> list[str]:
    """``name=version`` of `package` and every dependency apt would install here (no recommends)."""
    out = run_tool(["apt-get", "install", "-s", "--no-install-recommends", f"{package}={version}"],
                   cwd=Path(tempfile.gettempdir()), what=f"resolving {package}={version} with apt",
                   fix=f"run `apt-get update`; if the version is gone from the mirror, update CHROMIUM_VERSION "
                       f"in aft/assets/chromium.py ({fix})")
    pkgs = [f"{m.group(1)}={m.group(2)}" for line in out.splitlines() if (m := _INST.match(line))]
    if not any(p.startswith(f"{package}=") for p in pkgs):
        raise AssetError(f"apt would not install {package}={version} (already installed system-wide?); "
                         f"use the system chromium or {fix}")
    return pkgs


def build_chromium(dest: Path, progress: bool = True) -> None:
    """Fill `dest` with the unpacked headless shell, its missing libraries and ``launch.json``."""
    fix = f"run `apt-get update && apt-get install -y {CHROMIUM_PACKAGE}` (as root) instead"
    require_tool("apt-get", fix)
    require_tool("dpkg-deb", fix)
    dest.mkdir(parents=True, exist_ok=True)
    pkgs = _closure(CHROMIUM_PACKAGE, CHROMIUM_VERSION, fix)
    with tempfile.TemporaryDirectory(prefix="chromium-apt-", dir=dest.parent) as tmp:
        tmpdir = Path(tmp)
        tmpdir.chmod(0o777)  # lets apt's sandbox user write the .debs
        run_tool(["apt-get", "download", *pkgs], cwd=tmpdir, what=f"`apt-get download` of {len(pkgs)} packages",
                 fix=f"run `apt-get update` or {fix}")
        root = tmpdir / "root"
        for deb in sorted(tmpdir.glob("*.deb")):
            run_tool(["dpkg-deb", "-x", str(deb), str(root)], cwd=tmpdir, what=f"extracting {deb.name}", fix=fix)
        if not (root / BINARY).is_file():
            raise AssetError(f"{CHROMIUM_PACKAGE} {CHROMIUM_VERSION} has no {BINARY}; {fix}")
        (dest / "usr").mkdir(exist_ok=True)
        shutil.move(str(root / "usr" / "lib"), dest / "usr" / "lib")
    _dereference(dest)
    lib_dirs = sorted({p.parent.relative_to(dest).as_posix() for p in dest.rglob("*.so*") if p.is_file()})
    (dest / LAUNCH_FILE).write_text(json.dumps({"binary": BINARY, "lib_dirs": lib_dirs, "package": CHROMIUM_PACKAGE,
                                                "version": CHROMIUM_VERSION, "debs": pkgs}, indent=1) + "\n")


def _dereference(root: Path) -> None:
    """Replace each symlink under `root` by a copy of its target inside `root`; drop links leaving it."""
    for link in sorted(p for p in root.rglob("*") if p.is_symlink()):
        target = link.resolve()
        link.unlink()
        if target.is_file() and root.resolve() in target.parents:
            shutil.copy2(target, link)


@dataclass(frozen=True)
class Chromium:
    """A headless Chromium command: the binary and the environment it needs."""

    binary: str
    env: dict[str, str] = field(default_factory=dict)

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        flags = ["--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--mute-audio"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
        with tempfile.TemporaryDirectory(prefix="aft-chromium-") as profile:
            return subprocess.run([self.binary, *flags, f"--user-data-dir={profile}", *args], capture_output=True,
                                  text=True, timeout=timeout, env={**os.environ, **self.env}, check=False)

    def dump_dom(self, url: str, width: int = 1400, height: int = 900, budget_ms: int = 5000,
                 timeout: float = 60.0) -> str:
        """The page's DOM after load (scripts run; `budget_ms` of virtual time for images and timers)."""
        proc = self._run([f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                         timeout)
        if proc.returncode != 0 or "<html" not in proc.stdout:
            raise AssetError(f"chromium --dump-dom {url} failed (exit {proc.returncode}): "
                             f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
        return proc.stdout

    def screenshot(self, url: str, path: Path, width: int = 1400, height: int = 900, budget_ms: int = 5000,
                   timeout: float = 60.0) -> Path:
        """A PNG screenshot of the page's first `height` pixels at `width`."""
        proc = self._run([f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}",
                          f"--screenshot={path}", url], timeout)
        if proc.returncode != 0 or not path.is_file():
            raise AssetError(f"chromium --screenshot {url} failed (exit {proc.returncode}): "
                             f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
        return path


def cached_chromium(cache_dir: str | os.PathLike[str] | None = None) -> Chromium | None:
    """The ``chromium`` asset when it is fetched and intact (cheap check: manifest and sizes), else None."""
    from aft.assets.core import asset_dir, check_asset, get_spec

    folder = asset_dir("chromium", cache_dir)
    if check_asset(get_spec("chromium"), folder, full=False):
        return None
    launch = json.loads((folder / LAUNCH_FILE).read_text())
    libs = os.pathsep.join(str(folder / d) for d in launch["lib_dirs"])
    old = os.environ.get("LD_LIBRARY_PATH")
    return Chromium(str(folder / launch["binary"]), {"LD_LIBRARY_PATH": libs + (os.pathsep + old if old else "")})


def find_chromium(cache_dir: str | os.PathLike[str] | None = None) -> Chromium | None:
    """The cached asset, else a Chromium on PATH (``chromium-headless-shell``, ``chromium``), else None."""
    got = cached_chromium(cache_dir)
    if got is not None:
        return got
    for name in ("chromium-headless-shell", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Chromium(found)
    return None

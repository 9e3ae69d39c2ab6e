"""Source kind "apt": files shipped in a Debian package.

Order of attempts: the files already installed under their system folder (``apt-get install``
was run), then ``apt-get download`` + ``dpkg-deb -x`` into a temporary folder (no root needed,
the system is not modified), then an optional list of fallback URLs for machines without apt.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from aft.assets._run import require_tool, run_tool
from aft.assets.url import download_url
from aft.errors import AssetError

logger = logging.getLogger(__name__)


def deb_files(
    package: str,
    system_dir: str,
    files: Sequence[str],
    dest: Path,
    *,
    fallback_urls: dict[str, str] | None = None,
    progress: bool = True,
) -> None:
    """Copy `files` of Debian `package` (installed under `system_dir`) into `dest`.

    Args:
        package: Debian package name (``"dataset-fashion-mnist"``).
        system_dir: absolute folder where the package installs the files.
        files: file names inside `system_dir`.
        dest: folder to copy them into (created).
        fallback_urls: file name -> URL, used when apt is unavailable or fails.
    """
    dest.mkdir(parents=True, exist_ok=True)
    src = Path(system_dir)
    if all((src / f).is_file() for f in files):
        logger.info("copying %s from %s", package, src)
        for f in files:
            shutil.copyfile(src / f, dest / f)
        return
    fix = f"run `apt-get update && apt-get install -y {package}` (as root)"
    apt_error: AssetError | None = None
    if shutil.which("apt-get") and shutil.which("dpkg-deb"):
        try:
            _download_and_extract(package, system_dir, files, dest, fix)
            return
        except AssetError as exc:
            apt_error = exc
    else:
        apt_error = AssetError(f"apt-get/dpkg-deb not found, so the Debian package {package} cannot be used")
    if fallback_urls:
        logger.warning("%s; trying the download URL instead", apt_error)
        try:
            for f in files:
                download_url(fallback_urls[f], dest / f, progress=progress)
            return
        except AssetError as exc:
            raise AssetError(
                f"{apt_error} and the fallback URL failed too ({exc}); {fix}, or give network access"
            ) from None
    raise apt_error


def _download_and_extract(package: str, system_dir: str, files: Sequence[str], dest: Path, fix: str) -> None:
    require_tool("apt-get", fix)
    require_tool("dpkg-deb", fix)
    with tempfile.TemporaryDirectory(prefix=f"{dest.name}-apt-", dir=dest.parent) as tmp:
        tmpdir = Path(tmp)
        tmpdir.chmod(0o777)  # lets apt's sandbox user write the .deb
        run_tool(
            ["apt-get", "download", package],
            cwd=tmpdir,
            what=f"`apt-get download {package}`",
            fix=f"run `apt-get update` (the package lists may be missing) or {fix}",
        )
        debs = sorted(tmpdir.glob("*.deb"))
        if not debs:
            raise AssetError(f"`apt-get download {package}` produced no .deb file; {fix}")
        root = tmpdir / "root"
        run_tool(
            ["dpkg-deb", "-x", str(debs[0]), str(root)],
            cwd=tmpdir,
            what=f"extracting {debs[0].name}",
            fix=f"{fix}",
        )
        inside = root / system_dir.lstrip("/")
        for f in files:
            if not (inside / f).is_file():
                raise AssetError(f"the Debian package {package} has no file {system_dir}/{f}; {fix}")
            shutil.move(str(inside / f), dest / f)

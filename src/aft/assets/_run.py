"""Run an external tool (apt-get, npm, pip) and turn failures into one-line `AssetError`s."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from aft.errors import AssetError

logger = logging.getLogger(__name__)


def require_tool(tool: str, fix: str) -> str:
    """The full path of executable `tool`, or `AssetError` naming it and the fix."""
    found = shutil.which(tool)
    if not found:
        raise AssetError(f"the tool {tool!r} was not found on PATH; {fix}")
    return found


def run_tool(cmd: Sequence[str], *, cwd: Path, what: str, fix: str, timeout: float = 1800) -> str:
    """Run `cmd` in `cwd`; return its stdout, or raise `AssetError` naming `what` failed and the fix."""
    logger.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise AssetError(f"the tool {cmd[0]!r} was not found; {fix}") from None
    except subprocess.TimeoutExpired:
        raise AssetError(f"{what} timed out after {timeout:.0f} s; check the network and retry") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.lower().startswith(("e:", "error", "npm err"))]
        detail = (errs or lines or ["no output"])[-1]
        raise AssetError(f"{what} failed ({detail}); {fix}")
    return proc.stdout

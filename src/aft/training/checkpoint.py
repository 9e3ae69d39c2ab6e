"""Training checkpoints: atomic ``checkpoint.pt`` (weights_only-loadable) keeping the previous good one.

A checkpoint holds the student, regularizer, optimizer and grad-scaler states, the global step,
the RNG states and the selection state. The data order needs no state: epoch ``e``'s permutation
is a pure function of ``(seed, e)``, and the position in the epoch follows from the step.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from aft.errors import CheckpointError
from aft.paths import disk_full_as_error
from aft.training.atomic import atomic_write_json, atomic_write_with

logger = logging.getLogger(__name__)

CURRENT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
SIDECAR = "checksums.json"


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write `state` as the current checkpoint; the old current becomes the previous one.

    The sha256 of every checkpoint that may sit in the folder is recorded (atomically, before the
    files are rotated) in ``checksums.json``, so a file corrupted on disk is detected on load at
    any point of the rotation, and the previous good checkpoint is used instead.
    """
    d = Path(folder)
    with disk_full_as_error(d, "creating"):
        d.mkdir(parents=True, exist_ok=True)
    tmp_target = d / ".checkpoint.new.pt"
    try:
        atomic_write_with(tmp_target, lambda p: _torch_save(state, p))
        digest = _sha256(tmp_target)
        # the new file plus what the current and previous files may hold (rotation can be interrupted)
        known = [digest] + [h for h in (_recorded(d) or [])[:2] if h != digest]
        atomic_write_json(d / SIDECAR, {"format": "aft-checkpoint-checksums", "sha256": known,
                                        "current": {"step": int(state.get("step", -1)), "sha256": digest}})
    except BaseException:
        tmp_target.unlink(missing_ok=True)  # no half-made checkpoint; current and previous stay as they were
        raise
    if (d / CURRENT).exists():
        os.replace(d / CURRENT, d / PREVIOUS)
    os.replace(tmp_target, d / CURRENT)
    return d / CURRENT


#: what torch's zip writer says when a write fails (it raises RuntimeError, not OSError, on ENOSPC)
_TORCH_WRITE_FAILED = ("No space", "file write failed", "unexpected pos")


def _torch_save(state: dict[str, Any], path: Path) -> None:
    """`torch.save`, with its failed-write RuntimeError turned into ENOSPC (-> one-line `DiskFullError`)."""
    try:
        torch.save(state, str(path))
    except RuntimeError as exc:
        if any(m in str(exc) for m in _TORCH_WRITE_FAILED):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _recorded(d: Path) -> list[str] | None:
    """Digests listed in ``checksums.json`` (None when there is no readable sidecar)."""
    try:
        data = json.loads((d / SIDECAR).read_text())
        return [str(h) for h in data["sha256"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """Load the newest intact checkpoint (current, else previous) with ``weights_only=True``.

    A file whose sha256 is not recorded in ``checksums.json`` (truncated, bytes flipped) is skipped
    with a warning naming it; if no checkpoint is intact, `CheckpointError` says so in one line.
    """
    d = Path(folder)
    recorded = _recorded(d)
    errors = []
    for name in (CURRENT, PREVIOUS):
        path = d / name
        if not path.exists():
            continue
        try:
            if recorded is not None and _sha256(path) not in recorded:
                raise CheckpointError(f"sha256 does not match {SIDECAR} (the file is truncated or corrupt)")
            return torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt file: fall back to the previous good one
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.warning("checkpoint %s is unreadable (%s); trying the previous one", path, why)
            errors.append(f"{name}: {why[:200]}")
    if errors:
        raise CheckpointError(f"no intact checkpoint in {str(d)!r} ({'; '.join(errors)}); "
                              "delete the folder's checkpoints and restart without --resume")
    raise CheckpointError(f"no checkpoint in {str(d)!r} to resume from; run without --resume")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

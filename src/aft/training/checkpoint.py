"""Training checkpoints: atomic ``checkpoint.pt`` (weights_only-loadable) keeping the previous good one.

A checkpoint holds the student, regularizer, optimizer and grad-scaler states, the global step,
the RNG states and the selection state. The data order needs no state: epoch ``e``'s permutation
is a pure function of ``(seed, e)``, and the position in the epoch follows from the step.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from aft.errors import CheckpointError
from aft.training.atomic import atomic_write_with

logger = logging.getLogger(__name__)

CURRENT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write `state` as the current checkpoint; the old current becomes the previous one."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    tmp_target = d / ".checkpoint.new.pt"
    atomic_write_with(tmp_target, lambda p: torch.save(state, str(p)))
    if (d / CURRENT).exists():
        os.replace(d / CURRENT, d / PREVIOUS)
    os.replace(tmp_target, d / CURRENT)
    return d / CURRENT


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """Load the newest readable checkpoint (current, else previous) with ``weights_only=True``."""
    d = Path(folder)
    errors = []
    for name in (CURRENT, PREVIOUS):
        path = d / name
        if not path.exists():
            continue
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt file: fall back to the previous good one
            logger.warning("checkpoint %s unreadable (%s); trying the previous one", path, exc)
            errors.append(f"{name}: {exc}")
    if errors:
        raise CheckpointError(f"no readable checkpoint in {str(d)!r} ({'; '.join(errors)}); restart without --resume")
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

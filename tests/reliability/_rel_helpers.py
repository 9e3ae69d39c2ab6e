"""Tiny teachers registered under CLI names, kill hooks for fault tests, and file-integrity checks.

Used in-process by the tests and by `_driver.py`, which runs the `aft` CLI in a subprocess with a
hook that SIGKILLs the process at a precise point (an ``os.replace`` of a named file, a torn
``os.pwrite``, an optimizer step).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np

from aft.teachers.base import TEACHERS, CallableTeacher

_PROJ = np.random.default_rng(1234).normal(size=(64, 16)).astype(np.float32) / 8.0


def _rp_image(device: str | None = None, **_: Any) -> CallableTeacher:
    """A fixed random projection of the 8x8 pixels (a stand-in for a foundation model)."""

    def fn(images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32).reshape(len(images), -1)[:, :64] / 255.0
        return np.tanh(x @ _PROJ)

    return CallableTeacher(fn, dim=16, modality="image", name="rp-image", version="1")


def _rp_image_v2(device: str | None = None, **_: Any) -> CallableTeacher:
    """Same name and dim as rp-image, other weights: a different teacher version."""
    t = _rp_image()
    t._version = "2"
    return t


def _rp_text(device: str | None = None, **_: Any) -> CallableTeacher:
    def fn(texts: list[str]) -> np.ndarray:
        return np.array([[len(t), t.count("a"), t.count(" "), 1.0] for t in texts], dtype=np.float32) / 10.0

    return CallableTeacher(fn, dim=4, modality="text", name="rp-text", version="1")


def _nan_image(device: str | None = None, **_: Any) -> CallableTeacher:
    def fn(images: np.ndarray) -> np.ndarray:
        out = np.zeros((len(images), 4), dtype=np.float32)
        out[-1, 0] = np.nan
        return out

    return CallableTeacher(fn, dim=4, modality="image", name="nan-image", version="1")


def register_test_teachers() -> None:
    """Make the tiny teachers buildable by name (``aft extract --teacher rp-image``); idempotent."""
    from aft.teachers.base import _ensure_builtins

    _ensure_builtins()
    for name, fn in (("rp-image", _rp_image), ("rp-image-v2", _rp_image_v2), ("rp-text", _rp_text),
                     ("nan-image", _nan_image)):
        if name not in TEACHERS:
            TEACHERS.add(name, fn)


# ------------------------------------------------------------------------------ kill hooks
def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill(plan: str) -> None:
    """Arm one kill point. Plans:

    ``replace:<file name>:<k>``  SIGKILL at the k-th ``os.replace`` onto that name: the temp file
                                 is fully written, the rename has not happened.
    ``pwrite:<k>``               the k-th ``os.pwrite`` writes only half its bytes, then SIGKILL.
    ``step:<k>``                 SIGKILL right after optimizer step k (after its checkpoint).
    """
    if not plan:
        return
    kind, _, rest = plan.partition(":")
    if kind == "replace":
        name, _, k = rest.rpartition(":")
        real, seen = os.replace, [0]

        def replace(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
            if Path(dst).name == name:
                seen[0] += 1
                if seen[0] == int(k):
                    _die()
            real(src, dst, *a, **kw)

        os.replace = replace  # type: ignore[assignment]
    elif kind == "pwrite":
        real_pw, count = os.pwrite, [0]

        def pwrite(fd: int, data: Any, offset: int) -> int:
            count[0] += 1
            if count[0] == int(rest):
                view = memoryview(data)
                real_pw(fd, view[: max(1, len(view) // 2)], offset)
                _die()
            return real_pw(fd, data, offset)

        os.pwrite = pwrite  # type: ignore[assignment]
    elif kind == "step":
        import aft.training as training

        real_train, k = training.train, int(rest)

        def train(*a: Any, **kw: Any) -> Any:
            def hook(step: int, _: dict[str, float]) -> None:
                if step == k:
                    _die()

            return real_train(*a, on_step=hook, **kw)

        training.train = train  # type: ignore[assignment]
    else:  # pragma: no cover
        raise ValueError(plan)


# ------------------------------------------------------------------------------ integrity checks
def assert_store_readable_or_incomplete(root: Path) -> None:
    """Every store under `root` is either complete and verifies, or clearly incomplete (no manifest)."""
    from aft.features.store import MANIFEST, PROGRESS, FeatureStore

    for manifest in root.rglob(MANIFEST):
        store = FeatureStore.open(manifest.parent)
        store.verify_checksum()
    for progress in root.rglob(PROGRESS):
        json.loads(progress.read_text())  # never torn


def assert_run_files_intact(run: Path) -> None:
    """Every file a later command reads from a run folder parses completely."""
    import yaml
    from safetensors.torch import load_file

    from aft.training.checkpoint import load_checkpoint

    if not run.exists():
        return
    for f in run.rglob("*"):
        if not f.is_file() or f.name.startswith("."):
            continue  # temp files (".name.XXXX.tmp", ".checkpoint.new.pt") are never read
        if f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix == ".yaml":
            yaml.safe_load(f.read_text())
        elif f.suffix == ".jsonl":
            for line in f.read_text().splitlines():
                json.loads(line)
        elif f.suffix == ".safetensors":
            load_file(str(f))
    ck = run / "checkpoints"
    if (ck / "checkpoint.pt").exists() or (ck / "checkpoint.prev.pt").exists():
        load_checkpoint(ck)


def leftovers(root: Path) -> list[str]:
    """Files under `root` whose names a later command would read (not hidden temp files)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

"""`python -m aft` with one tiny extra teacher (``tiny-proj``: a fixed projection of the pixels).

Run as a script (also under torchrun): ``_aft_cli_driver.py extract --teacher tiny-proj ...``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

_PROJ = np.random.default_rng(5).normal(size=(64, 12)).astype(np.float32) / 8.0


def _tiny_proj(device: str | None = None, **_: Any) -> Any:
    from aft.teachers import CallableTeacher

    def fn(images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32).reshape(len(images), -1)[:, :64] / 16.0
        return np.tanh(x @ _PROJ)

    return CallableTeacher(fn, dim=12, modality="image", name="tiny-proj", version="1")


def register() -> None:
    from aft.teachers.base import TEACHERS, _ensure_builtins

    _ensure_builtins()
    if "tiny-proj" not in TEACHERS:
        TEACHERS.add("tiny-proj", _tiny_proj)


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    register()
    from aft.cli.main import main

    sys.exit(main(sys.argv[1:]))

"""Opt-in deterministic algorithms for one training run (``TrainConfig.deterministic``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

#: cuBLAS needs a fixed workspace for deterministic matrix products on CUDA >= 10.2
CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_VALUE = ":4096:8"


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Within the block: deterministic kernels only, cuDNN autotuning off; the previous settings after.

    Sets ``torch.use_deterministic_algorithms(True)``, ``cudnn.deterministic = True``,
    ``cudnn.benchmark = False`` and, unless already set, ``CUBLAS_WORKSPACE_CONFIG=:4096:8``. An op
    without a deterministic kernel then raises torch's RuntimeError naming it. A no-op when
    `enabled` is False.
    """
    if not enabled:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    set_env = CUBLAS_ENV not in os.environ
    if set_env:
        os.environ[CUBLAS_ENV] = CUBLAS_VALUE
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]
        if set_env:
            os.environ.pop(CUBLAS_ENV, None)

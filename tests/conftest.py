"""Shared test fixtures: real offline assets from the default cache (fetched once, then reused)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


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

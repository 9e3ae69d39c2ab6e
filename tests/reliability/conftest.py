"""Fixtures of the reliability tests: tiny teachers registered by name, the digits splits."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _rel_helpers import register_test_teachers  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _teachers() -> None:
    register_test_teachers()


@pytest.fixture(scope="session")
def digits():
    from aft.data import load_split

    return load_split("digits", "train"), load_split("digits", "test")

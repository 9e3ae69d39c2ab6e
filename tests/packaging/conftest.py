"""Fixtures of the packaging / first-day tests: small digits splits (the bundled data)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))

from _training_helpers import digits_splits  # noqa: E402


@pytest.fixture(scope="session")
def splits():
    return digits_splits()

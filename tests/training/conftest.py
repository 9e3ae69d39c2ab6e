"""Fixtures for the training tests: digits splits and synthetic teacher features."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _training_helpers import digits_features, digits_splits  # noqa: E402


@pytest.fixture(scope="session")
def splits():
    return digits_splits()


@pytest.fixture(scope="session")
def features(splits):
    return digits_features(splits[0])

"""Fixtures of the report tests: the fixed synthetic records of `_report_fixtures`."""

from __future__ import annotations

import pytest
from _report_fixtures import make_records

from aft.experiments.records import RunRecord


@pytest.fixture
def records() -> list[RunRecord]:
    return make_records()

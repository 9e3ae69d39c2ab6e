"""Comparison runs: suite configs, the grid runner with validation-based selection, and run records."""

from aft.experiments.records import RunRecord, append_record, read_records

__all__ = ["RunRecord", "append_record", "read_records"]

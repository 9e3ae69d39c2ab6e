"""Atomic file writes for run folders (re-exported from `aft.atomic_io`, the one implementation)."""

from aft.atomic_io import atomic_write_bytes, atomic_write_json, atomic_write_with

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_with"]

"""File helpers of the feature store: `aft.atomic_io`, with the store's JSON layout (sorted keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aft.atomic_io import atomic_write_bytes, fsync_dir, sha256_file
from aft.atomic_io import atomic_write_json as _atomic_write_json

__all__ = ["atomic_write_bytes", "atomic_write_json", "fsync_dir", "sha256_file"]


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as indented, key-sorted JSON (the manifests' stable layout)."""
    _atomic_write_json(path, obj, indent=1, sort_keys=True)

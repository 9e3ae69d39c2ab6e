"""`TeacherFeatureSource`: what the trainer needs from teacher features, and an in-memory version.

The on-disk `FeatureStore` (and the multi-teacher concatenation) implement the same protocol, so
the training loop never knows where features come from. Lookup is always by sample id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from aft.errors import FeatureStoreError, NonFiniteError


@runtime_checkable
class TeacherFeatureSource(Protocol):
    """Teacher features looked up by sample id.

    Attributes:
        dim: total feature dimension (sum over teachers).
        column_ranges: per teacher name, its ``(start, end)`` columns.
        num_views: number of cached augmented views per sample (1 = clean input only).
    """

    dim: int
    column_ranges: dict[str, tuple[int, int]]
    num_views: int

    def get(self, ids: Sequence[str], views: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """float32 array ``(len(ids), dim)``; `views` picks the view per sample (default 0)."""
        ...


class InMemoryFeatures:
    """A `TeacherFeatureSource` over an in-RAM array (tests, small data, user-provided features).

    Args:
        ids: sample ids, one per row.
        features: array ``(N, d)`` or ``(N, V, d)`` with V augmented views per sample.
        column_ranges: per teacher, its columns; default one teacher named ``"teacher"``.

    Example:
        >>> import numpy as np
        >>> src = InMemoryFeatures(["a", "b"], np.eye(2, dtype=np.float32))
        >>> src.get(["b"]).tolist()
        [[0.0, 1.0]]
    """

    def __init__(
        self,
        ids: Sequence[str],
        features: np.ndarray,
        column_ranges: dict[str, tuple[int, int]] | None = None,
    ) -> None:
        arr = np.asarray(features, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[:, None, :]
        if arr.ndim != 3 or arr.shape[0] != len(ids):
            raise FeatureStoreError(
                f"features of shape {tuple(np.shape(features))} do not match {len(ids)} ids; "
                "pass one row (or one (views, dim) block) per id"
            )
        if not np.isfinite(arr).all():
            raise NonFiniteError("teacher features contain NaN or Inf; recompute or clean them before training")
        self._array = arr
        self._index = {sid: i for i, sid in enumerate(ids)}
        if len(self._index) != len(ids):
            raise FeatureStoreError("duplicate sample ids in teacher features; ids must be unique")
        self.dim = int(arr.shape[2])
        self.num_views = int(arr.shape[1])
        self.column_ranges = dict(column_ranges or {"teacher": (0, self.dim)})

    def get(self, ids: Sequence[str], views: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        try:
            rows = np.fromiter((self._index[i] for i in ids), dtype=np.int64, count=len(ids))
        except KeyError as exc:
            raise FeatureStoreError(
                f"no teacher features for sample id {exc.args[0]!r}; extract features for this split first"
            ) from None
        v = np.zeros(len(rows), dtype=np.int64) if views is None else np.asarray(views, dtype=np.int64)
        if v.size and (v.min() < 0 or v.max() >= self.num_views):
            raise FeatureStoreError(f"view index out of range: features hold {self.num_views} view(s)")
        return self._array[rows, v]

"""Seeded, stratified, deterministic subsets of a `DatasetSplit` (and the helper that allocates them)."""

from __future__ import annotations

import numpy as np

from aft.data.split import DatasetSplit
from aft.errors import DataError


def allocate(counts: np.ndarray, n: int, min_per_class: int = 0) -> np.ndarray:
    """How many of `n` to take from each class with `counts` members (largest remainder, deterministic).

    Proportional to `counts`; then every class is raised to at least `min_per_class` (capped by its
    count) by taking from the most over-allocated classes. Never more than a class's count.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if n > total or n < 0:
        raise ValueError(f"cannot take {n} of {total}")
    floor_min = np.minimum(counts, min_per_class)
    if n < int(floor_min.sum()):
        raise ValueError(f"cannot take {n} with {min_per_class} per class")
    if total == 0:
        return counts.copy()
    quota = counts * (n / total)
    take = np.floor(quota).astype(np.int64)
    left = n - int(take.sum())
    order = np.lexsort((np.arange(len(counts)), -(quota - take)))  # largest remainder, then class index
    for c in order[:left]:
        take[c] += 1
    while (take < floor_min).any():
        need = int(np.flatnonzero(take < floor_min)[0])
        donors = np.flatnonzero(take > floor_min)
        donor = donors[np.argmax((take - quota)[donors])]
        take[donor] -= 1
        take[need] += 1
    return take


def stratified_indices(labels: np.ndarray, n: int, seed: int, min_per_class: int = 0) -> np.ndarray:
    """Sorted indices of a stratified random sample of size `n` (deterministic for a given seed)."""
    labels = np.asarray(labels, dtype=np.int64)
    classes = np.unique(labels)
    counts = np.array([(labels == c).sum() for c in classes])
    take = allocate(counts, n, min_per_class)
    rng = np.random.default_rng(seed)
    chosen = []
    for c, k in zip(classes, take, strict=True):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def stratified_subsample(split: DatasetSplit, n: int, seed: int = 0) -> DatasetSplit:
    """`n` samples of `split`, stratified by label, deterministic for `seed`, in their original order.

    Every class present in `split` keeps at least one sample. Raises `DataError` when `n` exceeds
    the split size or is below the number of classes present.
    """
    present = len(np.unique(split.labels))
    if n > len(split):
        raise DataError(
            f"{split.dataset}/{split.split}: cannot subsample {n} of {len(split)} samples; use n <= {len(split)}"
        )
    if n < max(present, 1):
        raise DataError(
            f"{split.dataset}/{split.split}: n={n} is less than the {present} classes present; "
            f"use n >= {present} so every class keeps a sample"
        )
    idx = stratified_indices(split.labels, n, seed, min_per_class=1)
    return split.subset(idx)


def train_val_split(
    split: DatasetSplit, val_fraction: float = 0.1, seed: int = 0
) -> tuple[DatasetSplit, DatasetSplit]:
    """Split `split` into (train, val), stratified by label and deterministic for `seed`.

    The validation part has ``round(val_fraction * len(split))`` samples (split name ``"val"``);
    the train part keeps the original split name. Both keep the original sample order.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}; e.g. use 0.1")
    n_val = int(round(val_fraction * len(split)))
    if n_val < 1 or n_val >= len(split):
        raise DataError(
            f"{split.dataset}/{split.split}: val_fraction={val_fraction} of {len(split)} samples leaves an "
            "empty train or validation part; use a larger split or another fraction"
        )
    val_idx = stratified_indices(split.labels, n_val, seed)
    mask = np.ones(len(split), dtype=bool)
    mask[val_idx] = False
    return split.subset(np.flatnonzero(mask)), split.subset(val_idx, split="val")

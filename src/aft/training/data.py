"""Split preparation for training: load by name, subsample, carve the validation split, fetch features."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from aft.data.split import DatasetSplit
from aft.errors import ConfigError, DataError, FeatureStoreError

logger = logging.getLogger(__name__)


def load_named_split(dataset: str | None, split: str, options: dict[str, Any] | None = None) -> DatasetSplit:
    """`aft.data.load_split(dataset, split, **options)`, with a clear error when no dataset is configured."""
    if not dataset:
        raise ConfigError("no dataset given; set `dataset` in the config (or pass train_split= in Python)")
    from aft import data

    loader = getattr(data, "load_split", None)
    if loader is None:  # pragma: no cover - the data package always provides it once installed
        raise ConfigError("aft.data.load_split is unavailable in this installation")
    return loader(dataset, split, **(options or {}))


def subsample(split: DatasetSplit, n: int | None, seed: int) -> DatasetSplit:
    """Stratified subsample of `n` samples (`aft.data.stratified_subsample`); the whole split when
    `n` is None or not smaller (a larger `n` is logged as a warning: the run uses fewer samples)."""
    if n is None or n >= len(split):
        if n is not None and n > len(split):
            logger.warning("%s/%s has %d samples, fewer than the limit %d: using all of them",
                           split.dataset, split.split, len(split), n)
        return split
    from aft.data import stratified_subsample

    return stratified_subsample(split, n, seed)


def carve_validation(split: DatasetSplit, fraction: float, seed: int) -> tuple[DatasetSplit, DatasetSplit | None]:
    """Seeded (train, val) split of the training data; val is None when `fraction` is 0."""
    if fraction <= 0:
        return split, None
    from aft import data

    fn = getattr(data, "train_val_split", None)
    if fn is not None:
        return fn(split, fraction, seed)
    n_val = max(1, int(round(fraction * len(split))))
    if n_val >= len(split):
        raise DataError(f"val_fraction {fraction} leaves no training samples out of {len(split)}")
    perm = np.random.default_rng(seed).permutation(len(split))
    return split.subset(np.sort(perm[n_val:]), "train"), split.subset(np.sort(perm[:n_val]), "val")


def check_features_cover(features: object, ids: Sequence[str], probe: int = 512) -> None:
    """Fail early when the feature store lacks ids of the training split (probes evenly spaced ids)."""
    if not ids:
        return
    pos = np.unique(np.linspace(0, len(ids) - 1, num=min(probe, len(ids))).astype(np.int64))
    try:
        arr = features.get([ids[i] for i in pos])  # type: ignore[attr-defined]
    except FeatureStoreError as exc:
        raise FeatureStoreError(f"the feature store does not match this dataset split: {exc}") from None
    if arr.shape != (len(pos), features.dim):  # type: ignore[attr-defined]
        raise FeatureStoreError(f"feature store returned shape {arr.shape}, expected ({len(pos)}, {features.dim})")  # type: ignore[attr-defined]

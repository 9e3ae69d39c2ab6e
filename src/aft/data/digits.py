"""scikit-learn's 8x8 digits (1,797 images) with a seeded stratified train/test split."""

from __future__ import annotations

import os

import numpy as np

from aft.data.sampling import stratified_indices
from aft.data.split import DatasetSplit
from aft.errors import ConfigError, DataError

CLASS_NAMES = tuple(str(i) for i in range(10))


def load_digits_split(
    split: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DatasetSplit:
    """Load the digits `split` ("train" or "test") as uint8 images ``(N, 8, 8)`` scaled to 0..255.

    The test part is a stratified sample of ``round(test_fraction * 1797)`` images chosen with
    `seed`; ids are ``digits-<original index>`` and keep the original order.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits dataset needs scikit-learn; install it with `pip install scikit-learn`") from None
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}; e.g. use 0.2")
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    test_idx = stratified_indices(labels, int(round(test_fraction * len(labels))), seed, min_per_class=1)
    mask = np.zeros(len(labels), dtype=bool)
    mask[test_idx] = True
    idx = np.flatnonzero(mask if split == "test" else ~mask)
    return DatasetSplit(
        dataset="digits",
        split=split,
        ids=[f"digits-{i:04d}" for i in idx],
        inputs=images[idx],
        labels=labels[idx],
        class_names=list(CLASS_NAMES),
        modality="image",
    )

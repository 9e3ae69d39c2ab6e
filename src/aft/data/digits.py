"""The 8x8 digits (1,797 images) with a seeded stratified train/test split.

The data ship with aft (``aft/data/bundled/digits.csv.gz``, 57 kB: the copy of the UCI ML
hand-written digits test set that scikit-learn bundles as ``load_digits``, CC BY 4.0), so the
getting-started dataset needs no extra package. The file's rows are the 64 pixel values (0..16)
followed by the label, exactly as scikit-learn reads them.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from importlib import resources

import numpy as np

from aft.data.sampling import stratified_indices
from aft.data.split import DatasetSplit
from aft.errors import ConfigError, DataError

CLASS_NAMES = tuple(str(i) for i in range(10))
NUM_IMAGES = 1797


@lru_cache(maxsize=1)
def _bundled() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) with values 0..16, labels (1797,)) from the bundled CSV."""
    try:
        raw = resources.files("aft.data").joinpath("bundled/digits.csv.gz").read_bytes()
        table = np.loadtxt(gzip.decompress(raw).decode("ascii").splitlines(), delimiter=",")
    except (OSError, ValueError) as exc:
        raise DataError(f"the bundled digits data is missing or corrupt ({exc}); reinstall aft") from None
    if table.shape != (NUM_IMAGES, 65):
        raise DataError(f"the bundled digits data has shape {table.shape}, expected ({NUM_IMAGES}, 65); reinstall aft")
    return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)


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
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}; e.g. use 0.2")
    pixels, labels = _bundled()
    images = np.rint(pixels * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
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

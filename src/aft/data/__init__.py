"""Datasets: one `DatasetSplit` interface for every source, built-in loaders, and seeded splits.

Example:
    >>> from aft.data import load_split, stratified_subsample
    >>> train = load_split("digits", "train")
    >>> small = stratified_subsample(train, 100, seed=0)
    >>> len(small), small.num_classes
    (100, 10)
"""

from aft.data.registry import (
    DATASETS,
    DatasetInfo,
    DatasetSource,
    dataset_info,
    dataset_names,
    load_split,
    register_dataset,
)
from aft.data.sampling import stratified_subsample, train_val_split
from aft.data.split import DatasetSplit, Modality

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetSource",
    "DatasetSplit",
    "Modality",
    "dataset_info",
    "dataset_names",
    "load_split",
    "register_dataset",
    "stratified_subsample",
    "train_val_split",
]

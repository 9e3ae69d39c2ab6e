"""Datasets: one `DatasetSplit` interface for every source, built-in loaders, and seeded splits."""

from aft.data.split import DatasetSplit, Modality

__all__ = ["DatasetSplit", "Modality"]

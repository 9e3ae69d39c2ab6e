"""Teacher features: streaming extraction and the verified, memory-mapped `FeatureStore`."""

from aft.features.extract import batch_order, extract
from aft.features.sharded import extract_distributed
from aft.features.source import InMemoryFeatures, TeacherFeatureSource
from aft.features.store import (
    ConcatenatedFeatures,
    FeatureStore,
    FeatureStoreWriter,
    is_complete,
    open_features,
    store_path,
)

__all__ = [
    "ConcatenatedFeatures",
    "FeatureStore",
    "FeatureStoreWriter",
    "InMemoryFeatures",
    "TeacherFeatureSource",
    "batch_order",
    "extract",
    "extract_distributed",
    "is_complete",
    "open_features",
    "store_path",
]

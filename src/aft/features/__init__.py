"""Teacher features: streaming extraction and the verified, memory-mapped `FeatureStore`."""

from aft.features.source import InMemoryFeatures, TeacherFeatureSource

__all__ = ["InMemoryFeatures", "TeacherFeatureSource"]

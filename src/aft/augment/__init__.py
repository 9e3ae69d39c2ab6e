"""Deterministic per-(sample, view) augmentation policies for augmentation-aware feature caching."""

from aft.augment import image_policies, text_policies  # noqa: F401  (register the policies)
from aft.augment.views import POLICIES, AugmentationPolicy, build_policy, view_rng

__all__ = ["POLICIES", "AugmentationPolicy", "build_policy", "view_rng"]

"""Deterministic per-(sample, view) augmentation policies for augmentation-aware feature caching."""

from aft.augment import image_policies, text_policies  # noqa: F401  (register the policies)
from aft.augment.views import (
    DEFAULT_POLICY,
    POLICIES,
    AugmentationPolicy,
    build_policy,
    draw_views,
    policy_tag,
    resolve_policy,
    view_rng,
)

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "AugmentationPolicy",
    "build_policy",
    "draw_views",
    "policy_tag",
    "resolve_policy",
    "view_rng",
]

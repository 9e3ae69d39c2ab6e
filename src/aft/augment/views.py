"""Deterministic augmented views: the transform of (sample id, view k) never depends on global RNG state.

A view is identified by ``(policy, sample_id, k)``. Its random parameters come from a generator
seeded by a sha256 of those three values, so every process and machine produces the same
augmented input, and teacher features cached for view k match the student input for view k.
View 0 is always the clean input.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from aft.errors import ConfigError
from aft.registry import Registry


def view_rng(policy: str, sample_id: str, view: int) -> np.random.Generator:
    """A numpy generator seeded only by (policy, sample id, view index)."""
    digest = hashlib.sha256(f"{policy}\x1f{sample_id}\x1f{int(view)}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


class AugmentationPolicy(ABC):
    """A named family of deterministic augmentations for one modality.

    Subclasses implement `augment_one(x, rng)`; `apply` handles view 0 (identity) and seeding.
    """

    name: ClassVar[str]
    modality: ClassVar[str]

    def config(self) -> dict[str, Any]:
        """Settings recorded in feature-store manifests (part of the fingerprint)."""
        return {"policy": self.name}

    @abstractmethod
    def augment_one(self, x: Any, rng: np.random.Generator) -> Any:
        """Augment one input with parameters drawn from `rng`."""

    def apply_one(self, x: Any, sample_id: str, view: int) -> Any:
        """The input for (sample_id, view); view 0 returns `x` unchanged."""
        if view < 0:
            raise ConfigError(f"view index must be >= 0, got {view}")
        if view == 0:
            return x
        return self.augment_one(x, view_rng(self.name, sample_id, view))

    def apply(self, inputs: np.ndarray | Sequence[str], ids: Sequence[str], views: Sequence[int]) -> Any:
        """Augment a batch: element i gets view ``views[i]`` of sample ``ids[i]``."""
        if not (len(inputs) == len(ids) == len(views)):
            raise ConfigError("inputs, ids and views must have the same length")
        out = [self.apply_one(x, sid, int(v)) for x, sid, v in zip(inputs, ids, views, strict=True)]
        if isinstance(inputs, np.ndarray):
            return np.stack(out).astype(inputs.dtype, copy=False)
        return out


POLICIES: Registry[type[AugmentationPolicy]] = Registry("augmentation policy")


def build_policy(name: str, **options: Any) -> AugmentationPolicy:
    """Build the augmentation policy registered as `name`.

    Example:
        >>> import numpy as np
        >>> policy = build_policy("image-basic")
        >>> img = np.zeros((28, 28), dtype=np.uint8)
        >>> policy.apply_one(img, "sample-0", 0) is img
        True
    """
    return POLICIES.get(name)(**options)


#: the policy used when views > 1 and none is named, per data modality
DEFAULT_POLICY = {"image": "image-basic", "text": "text-word-dropout"}


def resolve_policy(spec: str | AugmentationPolicy | None, modality: str) -> AugmentationPolicy:
    """The policy for `spec` (a registered name or a policy object); ``None`` picks the modality default.

    Raises:
        ConfigError: the policy augments another modality than `modality`, or no default exists.
        UnknownNameError: `spec` names no registered policy.
    """
    if spec is None:
        if modality not in DEFAULT_POLICY:
            raise ConfigError(f"no default augmentation for {modality} data; name one (--augment POLICY)")
        spec = DEFAULT_POLICY[modality]
    policy = build_policy(spec) if isinstance(spec, str) else spec
    if not isinstance(policy, AugmentationPolicy):
        raise ConfigError(f"augmentation must be a policy name or an AugmentationPolicy, got {type(spec).__name__}")
    if policy.modality != modality:
        raise ConfigError(
            f"augmentation {policy.name!r} is for {policy.modality}s but the data holds {modality}s; "
            f"use e.g. {DEFAULT_POLICY.get(modality, 'a matching policy')!r}"
        )
    return policy


def policy_tag(policy: AugmentationPolicy, num_views: int) -> str:
    """Short directory tag of a views store: ``v<K>-<sha256(policy config)[:8]>``."""
    blob = json.dumps(policy.config(), sort_keys=True).encode()
    return f"v{int(num_views)}-{hashlib.sha256(blob).hexdigest()[:8]}"


def draw_views(seed: int, step: int, count: int, num_views: int) -> np.ndarray:
    """View indices in ``[0, num_views)`` for the `count` samples of training step `step`.

    A pure function of ``(seed, step, position in the batch)``: no global RNG is read or advanced,
    so a resumed run draws exactly the views an uninterrupted run would.
    """
    if num_views <= 1:
        return np.zeros(int(count), dtype=np.int64)
    digest = hashlib.sha256(f"aft-views\x1f{int(seed)}\x1f{int(step)}".encode()).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))
    return rng.integers(0, int(num_views), size=int(count), dtype=np.int64)

"""Text augmentation policies: word dropout and contiguous word cropping."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from aft.augment.views import POLICIES, AugmentationPolicy


@POLICIES.register("text-word-dropout")
class WordDropoutPolicy(AugmentationPolicy):
    """Drop each whitespace-separated word with probability `p` (never all of them).

    Args:
        p: drop probability per word.
    """

    name: ClassVar[str] = "text-word-dropout"
    modality: ClassVar[str] = "text"

    def __init__(self, p: float = 0.1) -> None:
        self.p = float(p)

    def config(self) -> dict[str, Any]:
        return {"policy": self.name, "p": self.p}

    def augment_one(self, x: str, rng: np.random.Generator) -> str:
        words = x.split()
        if len(words) <= 1:
            return x
        keep = rng.random(len(words)) >= self.p
        if not keep.any():
            keep[int(rng.integers(len(words)))] = True
        return " ".join(w for w, k in zip(words, keep, strict=True) if k)


@POLICIES.register("text-crop")
class WordCropPolicy(AugmentationPolicy):
    """Keep a random contiguous window covering `fraction` of the words.

    Args:
        fraction: share of the words kept.
    """

    name: ClassVar[str] = "text-crop"
    modality: ClassVar[str] = "text"

    def __init__(self, fraction: float = 0.8) -> None:
        self.fraction = float(fraction)

    def config(self) -> dict[str, Any]:
        return {"policy": self.name, "fraction": self.fraction}

    def augment_one(self, x: str, rng: np.random.Generator) -> str:
        words = x.split()
        keep = max(1, int(round(len(words) * self.fraction)))
        if keep >= len(words):
            return x
        start = int(rng.integers(0, len(words) - keep + 1))
        return " ".join(words[start : start + keep])

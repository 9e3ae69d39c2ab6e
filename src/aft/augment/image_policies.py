"""Image augmentation policies for small gray or RGB images (random crop with padding, flip, small affine)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from aft.augment.views import POLICIES, AugmentationPolicy


def _crop_with_padding(img: np.ndarray, pad: int, dy: int, dx: int) -> np.ndarray:
    """Zero-pad by `pad` on each side, then crop the original size at offset (dy, dx)."""
    h, w = img.shape[:2]
    widths = [(pad, pad), (pad, pad)] + [(0, 0)] * (img.ndim - 2)
    padded = np.pad(img, widths, mode="constant")
    return padded[dy : dy + h, dx : dx + w]


def _affine(img: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """Rotate/scale about the centre and shift, nearest-neighbour sampling, zeros outside."""
    h, w = img.shape[:2]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    a = math.radians(angle_deg)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    y0, x0 = yy - cy - shift[0], xx - cx - shift[1]
    src_y = np.rint(cos * y0 - sin * x0 + cy).astype(np.int64)
    src_x = np.rint(sin * y0 + cos * x0 + cx).astype(np.int64)
    valid = (src_y >= 0) & (src_y < h) & (src_x >= 0) & (src_x < w)
    out = np.zeros_like(img)
    out[valid] = img[src_y[valid], src_x[valid]]
    return out


@POLICIES.register("image-basic")
class ImageBasicPolicy(AugmentationPolicy):
    """Random crop with zero padding, horizontal flip, and a small random affine.

    Args:
        pad: padding in pixels before the random crop.
        flip: probability of a horizontal flip.
        max_rotation: maximal rotation in degrees.
        max_scale: scale drawn from ``[1 - max_scale, 1 + max_scale]``.
    """

    name: ClassVar[str] = "image-basic"
    modality: ClassVar[str] = "image"

    def __init__(self, pad: int = 2, flip: float = 0.5, max_rotation: float = 10.0, max_scale: float = 0.1):
        self.pad, self.flip, self.max_rotation, self.max_scale = int(pad), float(flip), float(max_rotation), float(max_scale)

    def config(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "pad": self.pad,
            "flip": self.flip,
            "max_rotation": self.max_rotation,
            "max_scale": self.max_scale,
        }

    def augment_one(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        dy, dx = (int(v) for v in rng.integers(0, 2 * self.pad + 1, size=2))
        flip = bool(rng.random() < self.flip)
        angle = float(rng.uniform(-self.max_rotation, self.max_rotation))
        scale = float(rng.uniform(1 - self.max_scale, 1 + self.max_scale))
        out = _crop_with_padding(x, self.pad, dy, dx)
        if flip:
            out = out[:, ::-1]
        out = _affine(np.ascontiguousarray(out), angle, scale, (0.0, 0.0))
        return np.ascontiguousarray(out)

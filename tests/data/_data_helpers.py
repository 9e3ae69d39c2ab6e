"""Small generated datasets for the data tests (image folders, CSV splits) and a tiny image teacher."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from aft.teachers import TEACHERS, CallableTeacher

PROJ = np.random.default_rng(1).normal(size=(64, 6)).astype(np.float32)


def _tiny(**options):
    def fn(images):
        return np.asarray(images).reshape(len(images), -1).astype(np.float32) @ PROJ / 255.0

    return CallableTeacher(fn, dim=6, modality="image", name="test-data-tiny", **options)


if "test-data-tiny" not in TEACHERS:
    TEACHERS.add("test-data-tiny", _tiny)


def image_folder(root: Path, counts: dict[str, dict[str, int]], size: int = 8, seed: int = 0) -> Path:
    """``root/<split>/<class>/<i>.png`` gray images; class c is brighter for larger c (learnable)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, per_class in counts.items():
        for c, (cls, n) in enumerate(sorted(per_class.items())):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = 40 + 80 * c
                img = np.clip(rng.normal(base, 20, size=(size, size)), 0, 255).astype(np.uint8)
                Image.fromarray(img, mode="L").save(folder / f"{i:04d}.png")
    return root


def csv_split(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A CSV with a header ``text,label`` and `rows`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def png_bytes(value: int, size: int = 8, mode: str = "L") -> bytes:
    """One encoded PNG: a `size` x `size` image of gray level `value` (RGB: the same level in each channel)."""
    import io

    from PIL import Image

    shape = (size, size) if mode == "L" else (size, size, 3)
    buf = io.BytesIO()
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def learnable_images(n: int, seed: int = 0, classes: int = 2) -> tuple[list[bytes], list[int]]:
    """`n` 8x8 gray PNGs and their labels; class c is brighter for larger c (as `image_folder`)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        c = i % classes
        img = np.clip(rng.normal(40 + 80 * c, 20, size=(8, 8)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, format="PNG")
        images.append(buf.getvalue())
        labels.append(c)
    return images, labels

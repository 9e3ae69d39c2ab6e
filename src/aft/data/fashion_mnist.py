"""Fashion-MNIST: the official 60,000 / 10,000 train/test split from the idx files."""

from __future__ import annotations

import os
from pathlib import Path

from aft.data.idx import read_idx_images, read_idx_labels
from aft.data.split import DatasetSplit

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}


def load_fashion_mnist(
    split: str, *, cache_dir: str | os.PathLike[str] | None = None, path: str | None = None
) -> DatasetSplit:
    """Load Fashion-MNIST `split` ("train" or "test") as uint8 images ``(N, 28, 28)``.

    Args:
        split: ``"train"`` (60,000) or ``"test"`` (10,000).
        cache_dir: asset cache (the ``fashion-mnist`` asset is fetched there when missing).
        path: a folder holding the four idx ``.gz`` files, instead of the asset.
    """
    if path is None:
        from aft.assets import ensure

        folder = ensure("fashion-mnist", cache_dir)
    else:
        folder = Path(path)
    images_file, labels_file, count = FILES[split]
    images = read_idx_images(folder / images_file, expected_count=count)
    labels = read_idx_labels(folder / labels_file, expected_count=count)
    prefix = "train" if split == "train" else "test"
    return DatasetSplit(
        dataset="fashion-mnist",
        split=split,
        ids=[f"fmnist-{prefix}-{i:05d}" for i in range(count)],
        inputs=images,
        labels=labels,
        class_names=list(CLASS_NAMES),
        modality="image",
    )

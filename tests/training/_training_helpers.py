"""Tiny deterministic data, features and students shared by the training tests (also used by the DDP worker)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aft.data.split import DatasetSplit
from aft.features import InMemoryFeatures


def digits_splits(n_train: int = 240, n_test: int = 60) -> tuple[DatasetSplit, DatasetSplit]:
    from aft.data.digits import _bundled  # the digits ship with aft (scikit-learn's copy)

    pixels, target = _bundled()
    imgs = (pixels / 16 * 255).astype(np.uint8)
    ids = [f"d{i}" for i in range(len(imgs))]
    full = DatasetSplit("digits", "train", ids, imgs, target.astype(np.int64), [str(i) for i in range(10)], "image")
    return full.subset(np.arange(n_train)), full.subset(np.arange(n_train, n_train + n_test), "test")


def digits_features(split: DatasetSplit, extra: int = 6) -> InMemoryFeatures:
    rng = np.random.default_rng(0)
    flat = split.inputs.reshape(len(split), -1).astype(np.float32) / 255.0
    feats = np.concatenate([flat[:, ::4], rng.normal(size=(len(split), extra))], axis=1).astype(np.float32)
    d = feats.shape[1]
    return InMemoryFeatures(split.ids, feats, {"pixels": (0, d - extra), "noise": (d - extra, d)})


class TinyNet(nn.Module):
    """64 -> 16 (features) -> classes; optional dropout to exercise RNG restoring."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh())
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.body(x)
        return self.head(self.drop(z)), z

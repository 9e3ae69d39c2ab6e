"""`none`: standard transfer learning (STL), the task loss alone; the regularizer is zero."""

from __future__ import annotations

from typing import Any

import torch

from aft.regularizers.base import REGULARIZERS, Regularizer


@REGULARIZERS.register("none")
class NoTransfer(Regularizer):
    """Returns a zero scalar tensor (float32, on the student features' device); reads no teacher."""

    name = "none"
    uses_teacher = False

    def loss_term(self, student_features: torch.Tensor, teacher_features: torch.Tensor | None = None, labels: Any = None) -> torch.Tensor:
        return torch.zeros((), dtype=torch.float32, device=student_features.device)

"""`kd`: feature-regression knowledge distillation (FitNets-style): a linear map from phi to psi."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aft.regularizers.base import REGULARIZERS, Regularizer
from aft.regularizers.inputs import validate_pair


@REGULARIZERS.register("kd")
class FeatureKD(Regularizer):
    """Loss = mean over batch and teacher features of (W phi + b - psi)^2.

    W (d_phi -> d_psi, with bias) is trained with the student's learning rate and weight decay.
    Romero et al. 2015 (FitNets); the KD baseline of Qiu et al. 2024.
    """

    name = "kd"

    def __init__(self, student_dim: int, teacher_dim: int, check_finite: bool = True) -> None:
        super().__init__(student_dim, teacher_dim)
        self.check_finite = check_finite
        self.regressor = nn.Linear(self.student_dim, self.teacher_dim)

    def loss_term(self, student_features: torch.Tensor, teacher_features: torch.Tensor, labels: Any = None) -> torch.Tensor:
        phi, psi = validate_pair(student_features, teacher_features, self.student_dim, self.teacher_dim, self.check_finite)
        assert psi is not None
        w, b = self.regressor.weight.to(phi.dtype), self.regressor.bias.to(phi.dtype)
        return (phi @ w.T + b - psi.detach()).square().mean()

"""`kd`: feature-regression knowledge distillation (FitNets-style): a linear map from phi to psi."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from aft.regularizers.base import REGULARIZERS, Regularizer
from aft.regularizers.blocks import FeatureBlocks
from aft.regularizers.inputs import validate_pair


@REGULARIZERS.register("kd")
class FeatureKD(Regularizer):
    """Loss = mean over batch and teacher features of (W phi + b - psi)^2.

    W (d_phi -> d_psi, with bias) is trained with the student's learning rate and weight decay.
    Romero et al. 2015 (FitNets); the KD baseline of Qiu et al. 2024.

    Args:
        per_block: average the error per teacher block (teacher / field) first, then over the
            blocks, so that each teacher counts equally whatever its dimension ("KD per field");
            False (default): the mean over all teacher columns.
        blocks: the teacher blocks (a feature source's ``column_ranges``; `aft train` passes them).
    """

    name = "kd"

    def __init__(self, student_dim: int, teacher_dim: int, check_finite: bool = True, per_block: bool = False,
                 blocks: FeatureBlocks | Mapping[str, Sequence[int]] | Sequence[int] | None = None) -> None:
        super().__init__(student_dim, teacher_dim)
        self.check_finite = check_finite
        self.per_block = bool(per_block)
        self.blocks = FeatureBlocks.coerce(blocks if self.per_block else None, self.teacher_dim)
        self.regressor = nn.Linear(self.student_dim, self.teacher_dim)

    def loss_term(self, student_features: torch.Tensor, teacher_features: torch.Tensor, labels: Any = None) -> torch.Tensor:
        phi, psi = validate_pair(student_features, teacher_features, self.student_dim, self.teacher_dim, self.check_finite)
        assert psi is not None
        w, b = self.regressor.weight.to(phi.dtype), self.regressor.bias.to(phi.dtype)
        err = (phi @ w.T + b - psi.detach()).square()
        if not self.per_block:
            return err.mean()
        return torch.stack([err[:, a:c].mean() for a, c in self.blocks.ranges]).mean()


@REGULARIZERS.register("kd-fields")
class FieldKD(FeatureKD):
    """`kd` with ``per_block=True``: each teacher block (field) weighs the same in the loss."""

    name = "kd-fields"

    def __init__(self, student_dim: int, teacher_dim: int, check_finite: bool = True, per_block: bool = True,
                 blocks: FeatureBlocks | Mapping[str, Sequence[int]] | Sequence[int] | None = None) -> None:
        super().__init__(student_dim, teacher_dim, check_finite, per_block, blocks)

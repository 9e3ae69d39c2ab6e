"""`kernel-kd`: a learned projection of the student features kernel-matched to the raw teacher kernel."""

from __future__ import annotations

import torch
from torch import nn

from aft.regularizers.base import REGULARIZERS
from aft.regularizers.kernel_alignment import KernelAlignmentRegularizer


@REGULARIZERS.register("kernel-kd")
class KernelKD(KernelAlignmentRegularizer):
    """R between the kernel of P phi and the unweighted teacher kernel (every teacher feature counts).

    Args:
        projection_dim: output size of P (default: student_dim); P starts orthogonal (no bias:
            centering removes it) and uses the student's learning rate and weight decay.
        kernel_form, check_finite: as `aft`.
    """

    name = "kernel-kd"

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        projection_dim: int | None = None,
        kernel_form: str = "auto",
        check_finite: bool = True,
    ) -> None:
        super().__init__(student_dim, teacher_dim, kernel_form, check_finite)
        self.projection = nn.Linear(self.student_dim, int(projection_dim or self.student_dim), bias=False)
        nn.init.orthogonal_(self.projection.weight)

    def student_transform(self, phi: torch.Tensor) -> torch.Tensor:
        return phi @ self.projection.weight.to(phi.dtype).T

"""`aft-no-kernel`: a learned linear map from teacher to student features, squared error (ablation)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aft.regularizers.base import REGULARIZERS, Regularizer
from aft.regularizers.inputs import validate_pair
from aft.regularizers.kernel_alignment import prior_group


@REGULARIZERS.register("aft-no-kernel")
class NoKernelAFT(Regularizer):
    """Loss = mean over batch and features of (phi_c - (psi M)_c)^2, with ``_c`` = batch-centered.

    M (d_psi -> d_phi, no bias: centering removes it) is learned with ``prior_lr`` and no weight
    decay, like AFT's scales. `importance` is the L2 norm of each teacher feature's column of M.
    """

    name = "aft-no-kernel"

    def __init__(self, student_dim: int, teacher_dim: int, prior_lr: float = 1e-2, check_finite: bool = True) -> None:
        super().__init__(student_dim, teacher_dim)
        self.prior_lr = float(prior_lr)
        self.check_finite = check_finite
        self.map = nn.Linear(self.teacher_dim, self.student_dim, bias=False)

    def loss_term(self, student_features: torch.Tensor, teacher_features: torch.Tensor, labels: Any = None) -> torch.Tensor:
        phi, psi = validate_pair(student_features, teacher_features, self.student_dim, self.teacher_dim, self.check_finite)
        assert psi is not None
        mapped = psi.detach() @ self.map.weight.to(psi.dtype).T
        diff = (phi - phi.mean(0, keepdim=True)) - (mapped - mapped.mean(0, keepdim=True))
        return diff.square().mean()

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return prior_group(self, self.prior_lr, self.name)

    def importance(self) -> torch.Tensor:
        return torch.linalg.vector_norm(self.map.weight.detach(), dim=0)

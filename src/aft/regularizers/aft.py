"""`aft`: Adaptive Feature Transfer with learned diagonal feature weights rho = sigmoid(s)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aft.regularizers.base import REGULARIZERS
from aft.regularizers.kernel_alignment import KernelAlignmentRegularizer, prior_group, rho_metrics


@REGULARIZERS.register("aft")
class AdaptiveFeatureTransfer(KernelAlignmentRegularizer):
    """Match the student's batch kernel to the kernel of the rho-weighted teacher features.

    Loss: R = sqrt(mean_{i,j} (K_phi - K_psi_rho)_{ij}^2 + 1e-8) with K built from column-centered,
    row-normalized features, Psi_rho = Psi * rho, rho = sigmoid(s), s initialised to 0 (rho = 0.5).
    Qiu et al., ICML 2024.

    Args:
        student_dim: d_phi.
        teacher_dim: d_psi (all teachers concatenated).
        prior_lr: learning rate of s (1e-2 in the reference); its group has no weight decay.
        kernel_form: ``"auto"``, ``"explicit"`` or ``"gram"`` (see `aft.regularizers.kernels`).
        check_finite: raise on NaN/Inf inputs.
    """

    name = "aft"

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        prior_lr: float = 1e-2,
        kernel_form: str = "auto",
        check_finite: bool = True,
    ) -> None:
        super().__init__(student_dim, teacher_dim, kernel_form, check_finite)
        self.prior_lr = float(prior_lr)
        self.s = nn.Parameter(torch.zeros(self.teacher_dim))

    def rho(self) -> torch.Tensor:
        """Feature weights sigmoid(s), shape ``(d_psi,)``."""
        return torch.sigmoid(self.s)

    def teacher_weights(self) -> torch.Tensor:
        """rho: the teacher side of the kernel is Psi * rho."""
        return self.rho()

    def metrics(self, loss: torch.Tensor) -> dict[str, float]:
        return rho_metrics(loss, self.rho())

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """s gets ``prior_lr`` and no weight decay (the student's lr/wd are ignored)."""
        return prior_group(self, self.prior_lr, self.name)

    def importance(self) -> torch.Tensor:
        """rho, one weight in (0, 1) per teacher feature."""
        return self.rho().detach()

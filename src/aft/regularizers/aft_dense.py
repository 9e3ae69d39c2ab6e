"""`aft-dense`: AFT with a full learned d_psi x d_psi matrix S instead of diagonal weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aft.regularizers.base import REGULARIZERS
from aft.regularizers.kernel_alignment import KernelAlignmentRegularizer, prior_group


@REGULARIZERS.register("aft-dense")
class DenseAFT(KernelAlignmentRegularizer):
    """Match the student kernel to the kernel of Psi S, S ~ N(0, 1/d_psi) at init (an ablation).

    Args: as `aft` (``prior_lr``, ``kernel_form``, ``check_finite``). S gets ``prior_lr``, no weight
    decay. Memory: d_psi^2 parameters (64 MiB at d_psi = 4096).
    """

    name = "aft-dense"

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
        self.S = nn.Parameter(torch.randn(self.teacher_dim, self.teacher_dim) / self.teacher_dim**0.5)

    def teacher_transform(self, psi: torch.Tensor) -> torch.Tensor:
        return psi @ self.S.to(psi.dtype)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return prior_group(self, self.prior_lr, self.name)

    def importance(self) -> torch.Tensor:
        """Row L2 norms of S: how strongly each teacher feature j enters Psi S (row j of S)."""
        return torch.linalg.vector_norm(self.S.detach(), dim=1)

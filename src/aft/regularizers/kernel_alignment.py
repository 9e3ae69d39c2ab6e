"""Shared base of the kernel-matching methods (the AFT family and kernel KD).

A subclass says how the student and teacher features are transformed before the batch kernels
are compared (`student_transform`, `teacher_transform`); the comparison itself is
`aft.regularizers.kernels`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from aft.errors import ConfigError
from aft.regularizers import kernels
from aft.regularizers.base import Regularizer
from aft.regularizers.blocks import FeatureBlocks
from aft.regularizers.inputs import check_finite_output, validate_pair


class KernelAlignmentRegularizer(Regularizer):
    """R = sqrt(mean (K_phi - K_psi)^2 + 1e-8) between transformed student and teacher features.

    Args:
        student_dim: d_phi.
        teacher_dim: d_psi.
        kernel_form: ``"auto"`` (cheaper exact form), ``"explicit"`` or ``"gram"``.
        check_finite: raise `NonFiniteError` on NaN/Inf inputs, detected from the loss (any NaN/Inf
            input reaches it through the centering): one scalar read per call.
    """

    kernel: ClassVar[str] = "linear"
    #: how the teacher blocks combine (``"concat"``: Psi as given; see `aft.regularizers.blocks`)
    combine: str = "concat"
    #: the teacher feature blocks, used when `combine` is not ``"concat"``
    blocks: FeatureBlocks | None = None

    def __init__(self, student_dim: int, teacher_dim: int, kernel_form: str = "auto", check_finite: bool = True) -> None:
        super().__init__(student_dim, teacher_dim)
        if kernel_form not in kernels.FORMS:
            raise ConfigError(f"unknown kernel_form {kernel_form!r}; valid forms: {', '.join(kernels.FORMS)}")
        if self.kernel == "rbf" and kernel_form == "gram":
            raise ConfigError(f"{self.name} uses an rbf kernel, which has no gram form; use kernel_form='explicit'")
        self.kernel_form = kernel_form
        self.check_finite = check_finite

    def student_transform(self, phi: torch.Tensor) -> torch.Tensor:
        """Student features as compared (identity unless overridden)."""
        return phi

    def teacher_transform(self, psi: torch.Tensor) -> torch.Tensor:
        """Teacher features as compared, before `teacher_weights` (identity unless overridden)."""
        return psi

    def teacher_weights(self) -> torch.Tensor | None:
        """Per-column weights of the teacher features (AFT's rho), or None.

        Handed to the kernel separately rather than multiplied in `teacher_transform`, so the
        explicit linear form can use its cheaper weighted path (same value).
        """
        return None

    def _sq_diff_sum(self, phi_in: torch.Tensor, psi_in: torch.Tensor, rows: kernels.Rows) -> torch.Tensor:
        phi, psi = validate_pair(phi_in, psi_in, self.student_dim, self.teacher_dim, check=False)
        assert psi is not None
        weights = self.teacher_weights()
        if self.combine != "concat":
            assert self.blocks is not None
            total = kernels.blocks_sq_diff_sum(
                self.student_transform(phi), self.teacher_transform(psi.detach()), self.blocks, self.combine, rows,
                self.kernel,  # type: ignore[arg-type]
                psi_weights=None if weights is None else weights.to(psi.dtype),
            )
            return check_finite_output(total, self.check_finite, **{"student features": phi, "teacher features": psi})
        total = kernels.kernel_sq_diff_sum(
            self.student_transform(phi), self.teacher_transform(psi.detach()), rows, self.kernel, self.kernel_form,  # type: ignore[arg-type]
            psi_weights=None if weights is None else weights.to(psi.dtype),
        )
        return check_finite_output(total, self.check_finite, **{"student features": phi, "teacher features": psi})

    def loss_term(self, student_features: torch.Tensor, teacher_features: torch.Tensor, labels: Any = None) -> torch.Tensor:
        return kernels.distance_from_sum(self._sq_diff_sum(student_features, teacher_features, None), student_features.shape[0])

    def partial_sum(self, global_student: torch.Tensor, global_teacher: torch.Tensor, rows: kernels.Rows = None) -> torch.Tensor:
        """Data-parallel building block: sum of squared kernel differences of `rows` vs all columns.

        Args:
            global_student: Phi of the global batch, gathered from all ranks with gradient.
            global_teacher: Psi of the global batch (raw; this method applies rho / S itself).
            rows: this rank's rows (slice or index); None = all.

        See `aft.regularizers.kernels` for how ranks combine the sums into the exact global R.
        """
        return self._sq_diff_sum(global_student, global_teacher, rows)


def rho_metrics(loss: torch.Tensor, rho: torch.Tensor) -> dict[str, float]:
    """Loss and summaries of feature weights rho in (0, 1), read back in one host transfer.

    ``rho_entropy`` is the entropy of rho / sum(rho) divided by log(d): 1 = uniform weights,
    near 0 = all weight on a few features.
    """
    rho = rho.detach().float()
    p = rho / rho.sum().clamp_min(1e-30)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum()
    norm = max(torch.log(torch.tensor(float(rho.numel()))).item(), 1e-30) if rho.numel() > 1 else 1.0
    values = torch.stack(
        [loss.detach().float().reshape(()), entropy / norm, rho.mean(), rho.max(), rho.min(), (rho > 0.5).float().mean()]
    ).tolist()
    return dict(zip(["loss", "rho_entropy", "rho_mean", "rho_max", "rho_min", "rho_frac_above_half"], values, strict=True))


def prior_group(module: torch.nn.Module, prior_lr: float, name: str) -> list[dict[str, Any]]:
    """One parameter group with AFT's own learning rate and no weight decay."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [{"params": params, "lr": prior_lr, "weight_decay": 0.0, "name": name}] if params else []

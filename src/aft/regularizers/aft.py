"""`aft`: Adaptive Feature Transfer with learned diagonal feature weights rho = sigmoid(s)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from aft.errors import ConfigError
from aft.regularizers.base import REGULARIZERS
from aft.regularizers.blocks import COMBINES, FeatureBlocks
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
        combine: how the teacher blocks combine: ``"concat"`` (default; Psi as given, today's
            multi-teacher AFT) or ``"product"`` (their tensor product, the paper's vision-language
            AFT, computed on the B x B kernel without building it; see `aft.regularizers.blocks`).
        blocks: the teacher blocks: a feature source's ``column_ranges`` (``{name: (start, end)}``)
            or a list of block sizes; None = one block. `aft train` passes the store's blocks.
            Only ``combine="product"`` reads them (concatenation is the same for any split).
    """

    name = "aft"

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        prior_lr: float = 1e-2,
        kernel_form: str = "auto",
        check_finite: bool = True,
        combine: str = "concat",
        blocks: FeatureBlocks | Mapping[str, Sequence[int]] | Sequence[int] | None = None,
    ) -> None:
        super().__init__(student_dim, teacher_dim, kernel_form, check_finite)
        COMBINES.get(combine)  # an unknown name is a one-line UnknownNameError listing the valid ones
        if combine != "concat" and kernel_form == "gram":
            raise ConfigError(f"combine={combine!r} computes the B x B teacher kernel directly and has no gram form; "
                              "use kernel_form='auto' or 'explicit'")
        self.combine = combine
        # concatenation is the same for any split into blocks: only the product reads (and checks) them
        self.blocks = FeatureBlocks.coerce(blocks if combine != "concat" else None, self.teacher_dim)
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


@REGULARIZERS.register("aft-product")
class ProductAFT(AdaptiveFeatureTransfer):
    """`aft` with the teacher blocks combined by their tensor product (``combine="product"``).

    The paper's vision-language AFT: each block (teacher / field) is scaled by its slice of rho,
    the blocks are combined as an outer product, and the kernel of that product is matched. The
    B x B kernel is the elementwise product of the per-block kernels, so the product features
    (B x d_1 x d_2) are never built. Same options as `aft`; a name for suites and the CLI.
    """

    name = "aft-product"

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        prior_lr: float = 1e-2,
        kernel_form: str = "auto",
        check_finite: bool = True,
        combine: str = "product",
        blocks: FeatureBlocks | Mapping[str, Sequence[int]] | Sequence[int] | None = None,
    ) -> None:
        super().__init__(student_dim, teacher_dim, prior_lr, kernel_form, check_finite, combine, blocks)

"""`aft-fixed`: the AFT kernel loss with s frozen at 0 (rho = 0.5 everywhere; an ablation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from aft.regularizers.aft import AdaptiveFeatureTransfer
from aft.regularizers.base import REGULARIZERS
from aft.regularizers.blocks import FeatureBlocks


@REGULARIZERS.register("aft-fixed")
class FixedScaleAFT(AdaptiveFeatureTransfer):
    """AFT without learning which features matter: all teacher features weighted equally.

    Same options as `aft`; s is a frozen parameter (so checkpoints match `aft`'s layout) and the
    method has no parameter groups.
    """

    name = "aft-fixed"

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
        super().__init__(student_dim, teacher_dim, prior_lr, kernel_form, check_finite, combine, blocks)
        self.s.requires_grad_(False)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return []

    def importance(self) -> torch.Tensor:
        return self.rho().detach()

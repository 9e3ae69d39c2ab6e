"""`aft-rbf`: AFT with RBF kernels exp(-||a - b||^2) on the centered, normalized rows."""

from __future__ import annotations

from typing import ClassVar

from aft.regularizers.aft import AdaptiveFeatureTransfer
from aft.regularizers.base import REGULARIZERS


@REGULARIZERS.register("aft-rbf")
class RbfAFT(AdaptiveFeatureTransfer):
    """As `aft` (learned rho, same options) but both kernels are RBF; only the explicit form exists."""

    name = "aft-rbf"
    kernel: ClassVar[str] = "rbf"

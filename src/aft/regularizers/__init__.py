"""Transfer regularizers (AFT and the paper's baselines), chosen by name from a registry."""

from aft.regularizers.base import REGULARIZERS, PrepareContext, Regularizer, RegularizerOutput, build

__all__ = ["REGULARIZERS", "PrepareContext", "Regularizer", "RegularizerOutput", "build"]

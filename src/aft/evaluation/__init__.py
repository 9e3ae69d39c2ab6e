"""Evaluation helpers that do not train a student (the linear-probe accuracy reference)."""

from aft.evaluation.linear_probe import ProbeResult, fit_linear_probe

__all__ = ["ProbeResult", "fit_linear_probe"]

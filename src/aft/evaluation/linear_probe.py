"""Linear probe: multinomial logistic regression on (teacher) features, regularization chosen on validation.

Objective per candidate C (scikit-learn's convention): C * sum_i CE(W x_i + b, y_i) + ||W||^2 / 2
on standardized features (train mean/std), minimized with full-batch L-BFGS in float64. The C with
the best validation accuracy wins (ties: the smaller C, i.e. stronger regularization); the probe is
fitted on the training split only, so the validation split stays a fair selector.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from aft.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@dataclass
class ProbeResult:
    """A fitted linear probe.

    Attributes:
        C: selected inverse regularization strength.
        val_accuracy: validation accuracy of the selected C.
        weight / bias: ``(C_classes, d)`` / ``(C_classes,)`` acting on standardized features.
        mean / std: standardization statistics of the training features.
        val_accuracies: validation accuracy of every candidate C.
    """

    C: float
    val_accuracy: float
    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    val_accuracies: dict[float, float] = field(default_factory=dict)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``(n, num_classes)`` for raw features x."""
        z = (torch.as_tensor(x).to(torch.float64) - self.mean) / self.std
        return z @ self.weight.T + self.bias

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted labels (int64) for raw features x."""
        return self.logits(x).argmax(dim=1)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of rows of x whose predicted label equals y."""
        return float((self.predict(x) == torch.as_tensor(y).long()).double().mean())


def _fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, init: tuple[torch.Tensor, torch.Tensor] | None, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = x.shape[1]
    w = (init[0].clone() if init else torch.zeros(num_classes, d, dtype=x.dtype)).requires_grad_(True)
    b = (init[1].clone() if init else torch.zeros(num_classes, dtype=x.dtype)).requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")
    n = x.shape[0]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        # objective divided by C * n for conditioning; same minimizer
        loss = F.cross_entropy(x @ w.T + b, y) + w.square().sum() / (2 * c * n)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def fit_linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    Cs: Sequence[float] = DEFAULT_CS,
    num_classes: int | None = None,
    max_iter: int = 500,
) -> ProbeResult:
    """Fit a multinomial logistic-regression probe, choosing C by validation accuracy.

    Args:
        train_x, train_y: training features ``(n, d)`` and int labels ``(n,)``.
        val_x, val_y: validation features and labels (select C only).
        Cs: candidate inverse regularization strengths.
        num_classes: default max label + 1 over both splits.
        max_iter: L-BFGS iterations per C.

    Example:
        >>> import torch
        >>> x = torch.randn(60, 5); y = (x[:, 0] > 0).long()
        >>> probe = fit_linear_probe(x[:40], y[:40], x[40:], y[40:], Cs=(1.0,))
        >>> probe.accuracy(x[40:], y[40:]) > 0.8
        True
    """
    xt = torch.as_tensor(train_x).detach().to(torch.float64).cpu()
    xv = torch.as_tensor(val_x).detach().to(torch.float64).cpu()
    yt = torch.as_tensor(train_y).long().cpu()
    yv = torch.as_tensor(val_y).long().cpu()
    if xt.ndim != 2 or xt.shape[0] != yt.shape[0] or xt.shape[0] == 0:
        raise DataError(f"train features {tuple(xt.shape)} and labels {tuple(yt.shape)} do not match; pass (n, d) and (n,)")
    if xv.ndim != 2 or xv.shape[1] != xt.shape[1] or xv.shape[0] != yv.shape[0] or xv.shape[0] == 0:
        raise DataError(f"validation features {tuple(xv.shape)} / labels {tuple(yv.shape)} do not match the training features")
    if not (bool(torch.isfinite(xt).all()) and bool(torch.isfinite(xv).all())):
        raise DataError("probe features contain NaN or Inf; rebuild the feature store")
    if not Cs:
        raise DataError("Cs is empty; pass at least one regularization strength")
    k = int(num_classes) if num_classes is not None else int(max(yt.max(), yv.max())) + 1
    mean = xt.mean(0)
    std = xt.std(0, unbiased=False)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))  # zero-variance columns stay 0
    zt, zv = (xt - mean) / std, (xv - mean) / std
    best: ProbeResult | None = None
    accs: dict[float, float] = {}
    init = None
    for c in sorted(float(c) for c in Cs):  # strong -> weak regularization, warm-started
        w, b = _fit(zt, yt, k, c, init, max_iter)
        init = (w, b)
        acc = float(((zv @ w.T + b).argmax(1) == yv).double().mean())
        accs[c] = acc
        logger.debug("linear probe C=%g val accuracy %.4f", c, acc)
        if best is None or acc > best.val_accuracy:
            best = ProbeResult(c, acc, w, b, mean, std)
    assert best is not None
    best.val_accuracies = accs
    return best

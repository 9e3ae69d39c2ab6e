"""LogME (You et al., ICML 2021): evidence of a Bayesian linear model on fixed features, per class.

For features F (n x d) and one target column y (one-hot class indicator), the model is
y = F w + noise, w ~ N(0, I / alpha), noise ~ N(0, I / beta). The log marginal likelihood
(evidence) is

    L(alpha, beta) = n/2 log beta + d/2 log alpha - n/2 log(2 pi) - beta/2 ||F m - y||^2
                     - alpha/2 ||m||^2 - 1/2 log det(alpha I + beta F^T F),
    m = beta (alpha I + beta F^T F)^{-1} F^T y    (posterior mean of w),

maximized over (alpha, beta) by MacKay's fixed-point iterations: with sigma_i the eigenvalues of
F^T F and gamma = sum_i beta sigma_i / (alpha + beta sigma_i),
alpha <- gamma / ||m||^2 and beta <- (n - gamma) / ||F m - y||^2.
Everything is computed once in the eigenbasis of the smaller Gram matrix (F^T F or F F^T), so
each iteration costs O(min(n, d) * C), in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from aft.errors import DataError


@dataclass
class LogMEResult:
    """LogME of one feature set.

    Attributes:
        score: mean over classes of evidence / n (the LogME score; higher = better features).
        alpha: ``(C,)`` prior precision per class at the optimum.
        beta: ``(C,)`` noise precision per class at the optimum.
        weights: ``(d, C)`` posterior-mean weights m per class (float64).
        evidence: ``(C,)`` log marginal likelihood per class at (alpha, beta), not divided by n.
    """

    score: float
    alpha: torch.Tensor
    beta: torch.Tensor
    weights: torch.Tensor
    evidence: torch.Tensor

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Posterior-mean predictions F m, ``(n, C)``, float64."""
        return features.to(self.weights) @ self.weights


def _targets(labels: torch.Tensor, n: int, num_classes: int | None) -> torch.Tensor:
    if labels.ndim == 2:
        return labels.to(torch.float64)
    labels = labels.long()
    if labels.shape != (n,):
        raise DataError(f"labels must have shape ({n},), got {tuple(labels.shape)}; pass one label per feature row")
    c = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    return torch.nn.functional.one_hot(labels, c).to(torch.float64)


def logme_evidence(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int | None = None,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> LogMEResult:
    """LogME of `features` for classification `labels` (or a 2-D float target matrix).

    Args:
        features: ``(n, d)``.
        labels: int64 ``(n,)`` class labels (one-hot targets per class) or float ``(n, C)`` targets.
        num_classes: number of classes (default: max label + 1).
        max_iter: fixed-point iterations at most; tol: relative change of alpha and beta to stop.

    Returns:
        `LogMEResult` (float64 tensors on the features' device).
    """
    f = features.detach().to(torch.float64)
    if f.ndim != 2 or f.shape[0] == 0:
        raise DataError(f"LogME needs a non-empty (n, d) feature matrix, got {tuple(f.shape)}")
    if not bool(torch.isfinite(f).all()):
        raise DataError("LogME features contain NaN or Inf; rebuild the feature store")
    n, d = f.shape
    y = _targets(labels.to(f.device), n, num_classes)
    if n > d:
        sigma, v = torch.linalg.eigh(f.T @ f)
        z = v.T @ (f.T @ y)  # = sqrt(sigma) * (projection of y on the left singular vectors)
    else:
        sigma, u_basis = torch.linalg.eigh(f @ f.T)
        z = u_basis.T @ y
    sigma = sigma.clamp_min(0.0)
    keep = sigma > sigma.max() * 1e-12
    sig = torch.where(keep, sigma, torch.zeros_like(sigma))[:, None]  # (k, 1)
    # t_i: squared projection of y on left singular vector i; r0: ||y||^2 outside the span
    if n > d:
        t = torch.where(keep[:, None], z.square() / torch.where(keep, sigma, 1.0)[:, None], 0.0)
        r0 = (y.square().sum(0) - t.sum(0)).clamp_min(0.0)
    else:  # the eigenbasis of F F^T is complete: sum the left-out components (no cancellation)
        t = torch.where(keep[:, None], z.square(), 0.0)
        r0 = torch.where(keep[:, None], 0.0, z.square()).sum(0)
    k = sigma.numel()
    tiny, huge = 1e-300, 1e12

    alpha = torch.ones(y.shape[1], dtype=torch.float64, device=f.device)
    beta = torch.ones_like(alpha)

    def stats(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        denom = a + b * sig
        gamma = (b * sig / denom).sum(0)
        mm = (sig * b.square() * t / denom.square()).sum(0)
        res = ((a / denom).square() * t).sum(0) + r0
        return denom, gamma, mm, res

    for _ in range(max_iter):
        _, gamma, mm, res = stats(alpha, beta)
        new_alpha = (gamma / mm.clamp_min(tiny)).clamp(1.0 / huge, huge)
        new_beta = ((n - gamma) / res.clamp_min(tiny)).clamp(1.0 / huge, huge)
        change = torch.maximum((new_alpha - alpha).abs() / alpha, (new_beta - beta).abs() / beta).max()
        alpha, beta = new_alpha, new_beta
        if float(change) < tol:
            break

    denom, _, mm, res = stats(alpha, beta)
    logdet = torch.log(denom).sum(0) + (d - k) * torch.log(alpha)
    evidence = (
        n / 2 * torch.log(beta) + d / 2 * torch.log(alpha) - n / 2 * math.log(2 * math.pi)
        - beta / 2 * res - alpha / 2 * mm - logdet / 2
    )
    coef = torch.where(keep[:, None], beta * z / denom, 0.0)  # (k, C)
    weights = v @ coef if n > d else f.T @ (u_basis @ coef)
    return LogMEResult(float(evidence.mean() / n), alpha, beta, weights, evidence)

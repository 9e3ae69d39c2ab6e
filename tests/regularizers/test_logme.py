"""Tests of our LogME: evidence against a direct Gaussian log density, stationarity, posterior mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from aft.regularizers.logme import logme_evidence


def direct_log_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y; 0, F F^T / alpha + I / beta), the marginal likelihood of the Bayesian linear model."""
    cov = f @ f.T / alpha + np.eye(f.shape[0]) / beta
    return float(multivariate_normal(mean=np.zeros(f.shape[0]), cov=cov).logpdf(y))


def _data(n: int, d: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centers = torch.randn(classes, d, generator=g, dtype=torch.float64)
    feats = centers[labels] + 0.8 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return feats, labels


@pytest.mark.parametrize(("n", "d"), [(40, 6), (15, 25)])  # n > d (F^T F basis) and n <= d (F F^T basis)
def test_evidence_matches_gaussian_log_density(n: int, d: int) -> None:
    feats, labels = _data(n, d, 3, seed=n)
    res = logme_evidence(feats, labels, num_classes=3)
    f = feats.numpy()
    for c in range(3):
        y = (labels.numpy() == c).astype(np.float64)
        want = direct_log_evidence(f, y, float(res.alpha[c]), float(res.beta[c]))
        assert float(res.evidence[c]) == pytest.approx(want, abs=1e-8, rel=1e-10)
    assert res.score == pytest.approx(float(res.evidence.mean()) / n)


@pytest.mark.parametrize(("n", "d"), [(40, 6), (15, 25)])
def test_alpha_beta_is_a_stationary_point(n: int, d: int) -> None:
    feats, labels = _data(n, d, 2, seed=7 + n)
    res = logme_evidence(feats, labels, num_classes=2)
    f = feats.numpy()
    for c in range(2):
        y = (labels.numpy() == c).astype(np.float64)
        a, b = float(res.alpha[c]), float(res.beta[c])
        h = 1e-4
        best = direct_log_evidence(f, y, a, b)
        for da, db in [(h, 0), (0, h)]:
            up = direct_log_evidence(f, y, a * math.exp(da), b * math.exp(db))
            down = direct_log_evidence(f, y, a * math.exp(-da), b * math.exp(-db))
            assert abs(up - down) / (2 * h) < 1e-5  # d evidence / d log(alpha or beta) = 0
            assert up <= best + 1e-9 and down <= best + 1e-9  # and it is a maximum


def test_weights_are_the_posterior_mean_and_predict() -> None:
    feats, labels = _data(30, 5, 3, seed=3)
    res = logme_evidence(feats, labels)
    y = torch.nn.functional.one_hot(labels, 3).double()
    for c in range(3):
        a, b = res.alpha[c], res.beta[c]
        a_mat = a * torch.eye(5, dtype=torch.float64) + b * feats.T @ feats
        m = b * torch.linalg.solve(a_mat, feats.T @ y[:, c])
        torch.testing.assert_close(res.weights[:, c], m, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(res.predict(feats), feats @ res.weights)


def test_better_features_score_higher() -> None:
    feats, labels = _data(60, 4, 3, seed=11)
    noise = torch.randn(60, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert logme_evidence(feats, labels).score > logme_evidence(noise, labels).score


def test_float32_input_and_rank_deficient_features() -> None:
    feats, labels = _data(50, 6, 2, seed=5)
    feats = torch.cat([feats, feats[:, :2]], dim=1).float()  # duplicate columns: F^T F singular
    res = logme_evidence(feats, labels)
    assert math.isfinite(res.score) and torch.isfinite(res.weights).all()
    y = (labels.numpy() == 0).astype(np.float64)
    want = direct_log_evidence(feats.double().numpy(), y, float(res.alpha[0]), float(res.beta[0]))
    assert float(res.evidence[0]) == pytest.approx(want, abs=1e-6)

"""Tests of the linear probe: agreement with scikit-learn, C selection on validation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aft.errors import DataError
from aft.evaluation import fit_linear_probe


def _blobs(n: int, seed: int, d: int = 6, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    centers = torch.randn(k, d, generator=torch.Generator().manual_seed(99)) * 1.5
    x = centers[y] + torch.randn(n, d, generator=g)
    return x * torch.tensor([1.0, 100.0, 0.01, 1.0, 5.0, 1.0])[:d] + 3.0, y


def test_matches_sklearn_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(150, 0)
    xv, yv = _blobs(60, 1)
    probe = fit_linear_probe(x, y, xv, yv, Cs=(0.5,))
    z = ((x - probe.mean) / probe.std).numpy()
    sk = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(z, y.numpy())
    zv = ((xv.double() - probe.mean) / probe.std).numpy()
    np.testing.assert_allclose(probe.logits(xv).numpy() - probe.logits(xv).numpy().mean(1, keepdims=True),
                               sk.decision_function(zv) - sk.decision_function(zv).mean(1, keepdims=True), atol=1e-3)
    assert probe.accuracy(xv, yv) == pytest.approx(float((sk.predict(zv) == yv.numpy()).mean()))


def test_selects_C_by_validation_accuracy_and_predicts() -> None:
    x, y = _blobs(90, 2)
    xv, yv = _blobs(90, 3)
    probe = fit_linear_probe(x, y, xv, yv, Cs=(1e-4, 1.0))
    assert set(probe.val_accuracies) == {1e-4, 1.0}
    assert probe.val_accuracy == max(probe.val_accuracies.values())
    assert min(c for c, a in probe.val_accuracies.items() if a == probe.val_accuracy) == probe.C
    assert probe.val_accuracy > 0.8 and probe.accuracy(xv, yv) == pytest.approx(probe.val_accuracy)
    assert probe.predict(xv).dtype == torch.int64


def test_zero_variance_column_and_errors() -> None:
    x, y = _blobs(60, 4)
    x[:, 0] = 7.0
    probe = fit_linear_probe(x, y, x, y, Cs=(1.0,))
    assert torch.isfinite(probe.weight).all()
    with pytest.raises(DataError, match="do not match"):
        fit_linear_probe(x, y[:10], x, y)
    x[0, 1] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        fit_linear_probe(x, y, x, y)

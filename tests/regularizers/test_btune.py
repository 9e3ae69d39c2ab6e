"""Tests of B-Tuning: teacher weighting by LogME scores, the target map, loss and state round trip."""

from __future__ import annotations

import pytest
import torch

import aft.regularizers as R
from aft.errors import ConfigError
from aft.regularizers.logme import logme_evidence


def _context() -> R.PrepareContext:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(90) % 3
    good = torch.nn.functional.one_hot(labels, 3).float() * 2 + 0.3 * torch.randn(90, 3, generator=g)
    good = torch.cat([good, torch.randn(90, 2, generator=g)], dim=1)
    bad = torch.randn(90, 6, generator=g)
    return R.PrepareContext(torch.cat([good, bad], dim=1), labels, 3, {"good": (0, 5), "bad": (5, 11)})


def test_teacher_weights_are_softmax_of_logme_scores() -> None:
    ctx = _context()
    reg = R.build("btune", 4, 11)
    reg.prepare(ctx)
    scores = [logme_evidence(ctx.teacher_features[:, a:b], ctx.labels, 3).score for a, b in ctx.column_ranges.values()]
    torch.testing.assert_close(reg.teacher_scores.double(), torch.tensor(scores, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(reg.teacher_weights.double(), torch.softmax(torch.tensor(scores, dtype=torch.float64) / 0.1, 0), rtol=1e-6, atol=1e-7)
    assert reg.teacher_names == ["good", "bad"] and reg.teacher_weights[0] > reg.teacher_weights[1]


def test_target_is_weighted_sum_of_teacher_predictions_and_loss() -> None:
    ctx = _context()
    reg = R.build("btune", 4, 11, temperature=1.0)  # softer weights: both teachers contribute
    reg.prepare(ctx)
    psi = ctx.teacher_features[:7]
    want = sum(
        w * logme_evidence(ctx.teacher_features[:, a:b], ctx.labels, 3).predict(psi[:, a:b])
        for w, (a, b) in zip(reg.teacher_weights.double(), ctx.column_ranges.values(), strict=True)
    )
    torch.testing.assert_close(reg.target(psi).double(), want, rtol=1e-4, atol=1e-5)
    phi = torch.randn(7, 4, requires_grad=True)
    loss = reg(phi, psi)
    torch.testing.assert_close(loss, ((reg.head(phi) - reg.target(psi)) ** 2).mean())
    loss.backward()
    assert torch.isfinite(phi.grad).all() and reg.head.weight.grad is not None
    (group,) = reg.param_groups(1e-3, 0.01)
    assert group["lr"] == 1e-3 and len(group["params"]) == 2


def test_btune_requires_prepare_and_restores_from_state_dict() -> None:
    reg = R.build("btune", 4, 11)
    assert reg.needs_prepare and not reg.needs_labels
    with pytest.raises(ConfigError, match="prepare"):
        reg(torch.randn(3, 4), torch.randn(3, 11))
    reg.prepare(_context())
    fresh = R.build("btune", 4, 11)
    fresh.load_state_dict(reg.state_dict())
    phi, psi = torch.randn(5, 4), torch.randn(5, 11)
    torch.testing.assert_close(fresh(phi, psi), reg(phi, psi))


def test_single_teacher_without_column_ranges() -> None:
    ctx = _context()
    reg = R.build("btune", 4, 11)
    reg.prepare(R.PrepareContext(ctx.teacher_features, ctx.labels, 3))
    assert reg.teacher_weights.tolist() == [1.0]

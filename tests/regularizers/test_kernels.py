"""Tests of the AFT kernel discrepancy: an independent loop computation, both forms, invariances, DDP sums."""

from __future__ import annotations

import math

import pytest
import torch

from aft.errors import ConfigError
from aft.regularizers.kernels import (
    aft_kernel_distance,
    choose_form,
    distance_from_sum,
    kernel_distance,
    kernel_sq_diff_sum,
    rank_surrogate,
)


def naive_aft(phi: list[list[float]], psi: list[list[float]], rho: list[float]) -> float:
    """The AFT formula written out with python loops over pairs (no shared code)."""
    n = len(phi)

    def center_normalize(x: list[list[float]]) -> list[list[float]]:
        d = len(x[0])
        means = [sum(x[i][j] for i in range(n)) / n for j in range(d)]
        out = []
        for i in range(n):
            row = [x[i][j] - means[j] for j in range(d)]
            norm = math.sqrt(sum(v * v for v in row))
            out.append([v / (norm + 1e-8) for v in row])
        return out

    a = center_normalize(phi)
    c = center_normalize([[psi[i][j] * rho[j] for j in range(len(rho))] for i in range(n)])
    total = 0.0
    for i in range(n):
        for j in range(n):
            ka = sum(a[i][k] * a[j][k] for k in range(len(a[0])))
            kc = sum(c[i][k] * c[j][k] for k in range(len(c[0])))
            total += (ka - kc) ** 2
    return math.sqrt(total / n**2 + 1e-8)


@pytest.mark.parametrize("form", ["explicit", "gram"])
def test_aft_loss_matches_independent_loops(form: str) -> None:
    g = torch.Generator().manual_seed(0)
    phi, psi = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    rho = torch.rand(5, generator=g, dtype=torch.float64)
    got = float(aft_kernel_distance(phi, psi, rho, form=form))
    assert got == pytest.approx(naive_aft(phi.tolist(), psi.tolist(), rho.tolist()), abs=1e-10, rel=0)


def test_forms_agree_in_value_and_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    phi = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    psi = torch.randn(9, 7, generator=g, dtype=torch.float64)
    s = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True)
    grads = {}
    for form in ("explicit", "gram"):
        loss = aft_kernel_distance(phi, psi, torch.sigmoid(s), form=form)
        grads[form] = (loss.detach(), *torch.autograd.grad(loss, (phi, s)))
    for a, b in zip(grads["explicit"], grads["gram"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_auto_form_picks_cheaper_count() -> None:
    assert choose_form(128, 128, 4096) == "explicit"
    assert choose_form(4096, 128, 384) == "gram"


def test_uniform_rho_scale_leaves_loss_unchanged() -> None:
    g = torch.Generator().manual_seed(2)
    phi, psi = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 6, generator=g, dtype=torch.float64)
    rho = torch.rand(6, generator=g, dtype=torch.float64) + 0.1
    base = aft_kernel_distance(phi, psi, rho)
    for c in (0.05, 3.0, 40.0):
        # equal up to the +1e-8 of the row normalization (relative effect ~1e-8 / row norm)
        torch.testing.assert_close(aft_kernel_distance(phi, psi, rho * c), base, rtol=1e-6, atol=0)
    # a non-uniform change of rho does change the loss
    assert abs(float(aft_kernel_distance(phi, psi, rho * torch.linspace(0.1, 2, 6, dtype=torch.float64)) - base)) > 1e-4


@pytest.mark.parametrize("form", ["explicit", "gram"])
def test_loss_vanishes_when_student_matches_weighted_teacher(form: str) -> None:
    """phi = c * (psi * rho) Q + shift (Q orthogonal): identical kernels, R = sqrt(1e-8)."""
    g = torch.Generator().manual_seed(3)
    psi = torch.randn(10, 5, generator=g, dtype=torch.float64)
    rho = torch.rand(5, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    phi = 2.5 * (psi * rho) @ q + torch.randn(1, 5, generator=g, dtype=torch.float64)
    # not exactly 0: the +1e-8 in the row normalization is not scale invariant (~1e-8 per entry)
    assert float(kernel_sq_diff_sum(phi, psi * rho, form=form)) < 1e-12
    assert float(aft_kernel_distance(phi, psi, rho, form=form)) == pytest.approx(1e-4, rel=1e-8)
    assert float(aft_kernel_distance(torch.randn(10, 5, generator=g, dtype=torch.float64), psi, rho)) > 0.05


@pytest.mark.parametrize(("kernel", "form"), [("linear", "explicit"), ("linear", "gram"), ("rbf", "explicit")])
def test_row_block_partial_sums_add_up(kernel: str, form: str) -> None:
    g = torch.Generator().manual_seed(4)
    phi = torch.randn(12, 4, generator=g, dtype=torch.float64, requires_grad=True)
    psi = torch.randn(12, 6, generator=g, dtype=torch.float64)
    full = kernel_sq_diff_sum(phi, psi, kernel=kernel, form=form)  # type: ignore[arg-type]
    blocks = [kernel_sq_diff_sum(phi, psi, rows=slice(i, i + 4), kernel=kernel, form=form) for i in (0, 4, 8)]  # type: ignore[arg-type]
    torch.testing.assert_close(sum(blocks), full, rtol=1e-10, atol=1e-12)
    idx = torch.tensor([1, 5, 7])
    rest = torch.tensor([i for i in range(12) if i not in (1, 5, 7)])
    parts = kernel_sq_diff_sum(phi, psi, rows=idx, kernel=kernel, form=form) + kernel_sq_diff_sum(phi, psi, rows=rest, kernel=kernel, form=form)  # type: ignore[arg-type]
    torch.testing.assert_close(parts, full, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(distance_from_sum(full, 12), kernel_distance(phi, psi, kernel=kernel, form=form))  # type: ignore[arg-type]


def test_rank_surrogates_reproduce_the_global_gradient() -> None:
    """Simulated W=3 ranks: DDP-averaged gradients of the surrogates equal the gradient of R."""
    g = torch.Generator().manual_seed(5)
    phi = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    psi = torch.randn(9, 6, generator=g, dtype=torch.float64)
    (want,) = torch.autograd.grad(kernel_distance(phi, psi), phi)
    world = 3
    locals_ = [kernel_sq_diff_sum(phi, psi, rows=slice(3 * r, 3 * r + 3)) for r in range(world)]
    total = sum(x.detach() for x in locals_)
    got = sum(torch.autograd.grad(rank_surrogate(x, total, 9, world), phi)[0] for x in locals_) / world
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rows", [None, slice(2, 7), torch.tensor([0, 3, 9]), torch.arange(10) % 3 == 0])
def test_weighted_explicit_path_equals_premultiplied_features(rows: object) -> None:
    """psi_weights=rho (cheap path: centre first, normalize the B x B kernel) == Psi * rho, values and gradients."""
    g = torch.Generator().manual_seed(11)
    phi = torch.randn(10, 5, generator=g, dtype=torch.float64, requires_grad=True)
    psi = torch.randn(10, 13, generator=g, dtype=torch.float64) * 3 + 1
    s = torch.randn(13, generator=g, dtype=torch.float64, requires_grad=True)
    fast = kernel_sq_diff_sum(phi, psi, rows=rows, form="explicit", psi_weights=torch.sigmoid(s))  # type: ignore[arg-type]
    slow = kernel_sq_diff_sum(phi, psi * torch.sigmoid(s), rows=rows, form="explicit")  # type: ignore[arg-type]
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(fast, (phi, s)), torch.autograd.grad(slow, (phi, s)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_weighted_path_keeps_gradients_to_teacher_features_that_need_them() -> None:
    phi = torch.randn(6, 3, dtype=torch.float64)
    psi = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    rho = torch.rand(4, dtype=torch.float64)
    (got,) = torch.autograd.grad(kernel_sq_diff_sum(phi, psi, psi_weights=rho), psi)
    (want,) = torch.autograd.grad(kernel_sq_diff_sum(phi, psi * rho), psi)
    torch.testing.assert_close(got, want)
    assert got.abs().sum() > 0


def test_weighted_path_batch_of_one_has_zero_not_nan_gradient() -> None:
    phi = torch.randn(1, 3, requires_grad=True)
    s = torch.zeros(4, requires_grad=True)
    total = kernel_sq_diff_sum(phi, torch.randn(1, 4), psi_weights=torch.sigmoid(s), form="explicit")
    total.backward()
    assert float(total.detach()) == 0.0
    assert torch.equal(s.grad, torch.zeros(4)) and torch.equal(phi.grad, torch.zeros(1, 3))


def test_psi_weights_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"psi_weights must have shape \(4,\)"):
        kernel_sq_diff_sum(torch.randn(3, 2), torch.randn(3, 4), psi_weights=torch.ones(5))


@pytest.mark.parametrize("rows", [None, slice(1, 5), torch.tensor([6, 0, 3, 3]), torch.arange(7) % 2 == 1])
def test_fused_forms_pass_gradcheck(rows: object) -> None:
    """The hand-written backwards (full batch and row blocks, duplicate rows included) against finite differences."""
    g = torch.Generator().manual_seed(12)
    phi = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    psi = torch.randn(7, 9, generator=g, dtype=torch.float64)
    w = torch.rand(9, generator=g, dtype=torch.float64).add_(0.2).requires_grad_()
    fn = lambda x, v: kernel_sq_diff_sum(x, psi, rows=rows, form="explicit", psi_weights=v)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (phi, w))
    if rows is not None:
        return
    # and the same value and gradients as the composed form it replaces
    fused = kernel_sq_diff_sum(phi, psi, form="explicit", psi_weights=w)
    composed = kernel_sq_diff_sum(phi, psi * w, form="explicit")
    torch.testing.assert_close(fused, composed, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(fused, (phi, w)), torch.autograd.grad(composed, (phi, w)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

"""Tests of the AFT-family regularizers: gradients, parameter groups, metrics and numerics."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import aft.regularizers as R
from aft.errors import ConfigError, NonFiniteError

KERNEL_METHODS = ["aft", "aft-dense", "aft-rbf", "aft-fixed", "aft-no-kernel", "kernel-kd"]


def _gradcheck_module(name: str, batch: int = 5, d_phi: int = 3, d_psi: int = 4, **options: object) -> None:
    """gradcheck w.r.t. the student features AND the regularizer's trainable parameters."""
    torch.manual_seed(0)
    reg = R.build(name, d_phi, d_psi, **options).double()
    names = [n for n, p in reg.named_parameters() if p.requires_grad]
    params = [p.detach().clone().requires_grad_(True) for n, p in reg.named_parameters() if p.requires_grad]
    if name in ("aft", "aft-rbf"):  # move off rho = 0.5 so the check is not at a symmetric point
        params[0] = torch.randn(d_psi, dtype=torch.float64).requires_grad_(True)
    phi = torch.randn(batch, d_phi, dtype=torch.float64, requires_grad=True)
    psi = torch.randn(batch, d_psi, dtype=torch.float64)

    def f(phi_: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return functional_call(reg, dict(zip(names, ps, strict=True)), (phi_, psi))

    assert torch.autograd.gradcheck(f, (phi, *params), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("name", ["aft", "aft-dense", "aft-no-kernel", "kernel-kd"])
def test_gradcheck_linear_kernel_methods(name: str) -> None:
    _gradcheck_module(name)


@pytest.mark.parametrize("form", ["explicit", "gram"])
def test_gradcheck_aft_both_forms(form: str) -> None:
    _gradcheck_module("aft", kernel_form=form)


def test_gradcheck_aft_rbf() -> None:
    _gradcheck_module("aft-rbf")


def test_aft_module_equals_function_of_rho() -> None:
    reg = R.build("aft", 3, 4)
    with torch.no_grad():
        reg.s.copy_(torch.tensor([0.3, -1.0, 2.0, 0.0]))
    phi, psi = torch.randn(6, 3), torch.randn(6, 4)
    torch.testing.assert_close(reg(phi, psi), R.aft_kernel_distance(phi, psi, torch.sigmoid(reg.s)))
    torch.testing.assert_close(reg.importance(), torch.sigmoid(reg.s).detach())


def test_param_groups_and_flags() -> None:
    aft_reg = R.build("aft", 3, 4, prior_lr=0.05)
    (group,) = aft_reg.param_groups(lr=1e-3, weight_decay=0.1)
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.0 and group["params"] == [aft_reg.s]
    assert R.build("aft-fixed", 3, 4).param_groups(1e-3, 0.1) == []
    assert not R.build("aft-fixed", 3, 4).s.requires_grad
    (dense,) = R.build("aft-dense", 3, 4).param_groups(1e-3, 0.1)
    assert dense["lr"] == 1e-2 and dense["weight_decay"] == 0.0
    (kkd,) = R.build("kernel-kd", 3, 4).param_groups(1e-3, 0.1)
    assert kkd["lr"] == 1e-3 and kkd["weight_decay"] == 0.1
    assert all(R.REGULARIZERS.get(n).uses_teacher for n in KERNEL_METHODS)


def test_aft_scales_learn_only_from_regularizer() -> None:
    reg = R.build("aft", 3, 4)
    phi, psi = torch.randn(8, 3, requires_grad=True), torch.randn(8, 4)
    reg(phi, psi).backward()
    assert reg.s.grad is not None and torch.isfinite(reg.s.grad).all() and reg.s.grad.abs().sum() > 0
    assert phi.grad is not None and phi.grad.abs().sum() > 0


def test_aft_metrics() -> None:
    reg = R.build("aft", 3, 4)
    with torch.no_grad():
        reg.s.copy_(torch.tensor([5.0, -5.0, 0.1, -0.1]))
    out = reg.compute(torch.randn(6, 3), torch.randn(6, 4))
    m = out.metrics
    assert m["loss"] == pytest.approx(float(out.loss.detach()))
    rho = torch.sigmoid(reg.s).detach()
    assert m["rho_mean"] == pytest.approx(float(rho.mean()))
    assert m["rho_max"] == pytest.approx(float(rho.max()))
    assert m["rho_frac_above_half"] == pytest.approx(0.5)
    assert 0.0 < m["rho_entropy"] < 1.0
    assert R.build("aft", 3, 4).compute(torch.randn(6, 3), torch.randn(6, 4)).metrics["rho_entropy"] == pytest.approx(1.0)


def test_dense_importance_is_row_norm() -> None:
    reg = R.build("aft-dense", 3, 4)
    torch.testing.assert_close(reg.importance(), reg.S.detach().norm(dim=1))


@pytest.mark.parametrize("name", KERNEL_METHODS)
@pytest.mark.parametrize(
    "case", ["batch1", "batch2", "constant", "zero_var_columns", "float16", "bfloat16"]
)
def test_numerics_finite_loss_and_gradients(name: str, case: str) -> None:
    torch.manual_seed(0)
    reg = R.build(name, 6, 10)
    batch = {"batch1": 1, "batch2": 2}.get(case, 8)
    phi, psi = torch.randn(batch, 6), torch.randn(batch, 10)
    if case == "constant":
        phi, psi = torch.ones(batch, 6), torch.full((batch, 10), 3.0)
    if case == "zero_var_columns":
        phi[:, :3] = 1.0
        psi[:, 5:] = -2.0
    if case in ("float16", "bfloat16"):
        dtype = getattr(torch, case)
        phi, psi = phi.to(dtype), psi.to(dtype)
    phi.requires_grad_(True)
    loss = reg(phi, psi)
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert torch.isfinite(loss)
    loss.backward()
    assert phi.grad is not None and torch.isfinite(phi.grad).all()
    for p in reg.parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", ["aft", "aft-rbf", "kernel-kd"])
def test_large_teacher_dim(name: str) -> None:
    reg = R.build(name, 32, 3000)
    phi = torch.randn(16, 32, requires_grad=True)
    loss = reg(phi, torch.randn(16, 3000) * 50)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(phi.grad).all() and torch.isfinite(reg.s.grad if name != "kernel-kd" else phi.grad).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["student", "teacher"])
@pytest.mark.parametrize(("name", "form"), [("aft", "explicit"), ("aft", "gram"), ("aft-rbf", "explicit"),
                                            ("aft-dense", "auto"), ("kernel-kd", "auto")])
def test_non_finite_input_raises_before_touching_scales(bad: float, where: str, name: str, form: str) -> None:
    """The check reads the loss; every NaN/Inf input must still reach it and be named."""
    reg = R.build(name, 3, 4, kernel_form=form)
    before = {k: v.clone() for k, v in reg.state_dict().items()}
    phi, psi = torch.randn(5, 3), torch.randn(5, 4)
    (phi if where == "student" else psi)[2, 1] = bad
    with pytest.raises(NonFiniteError, match=f"^{where} features contain NaN or Inf"):
        reg(phi, psi)
    assert all(torch.equal(v, before[k]) for k, v in reg.state_dict().items())


def test_non_finite_loss_from_finite_inputs_blames_the_parameters() -> None:
    reg = R.build("aft", 3, 4)
    with torch.no_grad():
        reg.s[1] = float("nan")
    with pytest.raises(NonFiniteError, match="inputs are finite; its parameters have diverged"):
        reg(torch.randn(5, 3), torch.randn(5, 4))
    reg.check_finite = False
    assert torch.isnan(reg(torch.randn(5, 3), torch.randn(5, 4)))


def test_shape_errors_are_clear() -> None:
    reg = R.build("aft", 3, 4)
    with pytest.raises(ConfigError, match=r"teacher features must have shape \(batch, 4\)"):
        reg(torch.randn(5, 3), torch.randn(5, 7))
    with pytest.raises(ConfigError, match="differ"):
        reg(torch.randn(5, 3), torch.randn(4, 4))
    with pytest.raises(ConfigError, match="valid forms"):
        R.build("aft", 3, 4, kernel_form="fast")
    with pytest.raises(ConfigError, match="no gram form"):
        R.build("aft-rbf", 3, 4, kernel_form="gram")


def test_partial_sum_on_module_matches_full_loss() -> None:
    reg = R.build("aft", 3, 4)
    with torch.no_grad():
        reg.s.normal_()
    phi, psi = torch.randn(8, 3), torch.randn(8, 4)
    total = reg.partial_sum(phi, psi, slice(0, 5)) + reg.partial_sum(phi, psi, slice(5, 8))
    torch.testing.assert_close(R.kernels.distance_from_sum(total, 8), reg(phi, psi))

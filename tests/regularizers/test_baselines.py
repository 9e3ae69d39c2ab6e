"""Tests of the baseline regularizers: kd, rkd, ft, none, and the registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

import aft.regularizers as R
from aft.errors import ConfigError, UnknownNameError
from aft.regularizers.rkd import rkd_losses


def _smooth_l1(a: float, b: float) -> float:
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def naive_rkd(s: list[list[float]], t: list[list[float]]) -> tuple[float, float]:
    """RKD distance and angle losses by explicit double and triple loops."""
    n = len(s)

    def dist(x: list[list[float]]) -> list[list[float]]:
        d = [[math.sqrt(sum((x[i][k] - x[j][k]) ** 2 for k in range(len(x[0])))) for j in range(n)] for i in range(n)]
        pos = [d[i][j] for i in range(n) for j in range(n) if d[i][j] > 0]
        mean = sum(pos) / len(pos)
        return [[v / mean for v in row] for row in d]

    def angle(x: list[list[float]], i: int, j: int, k: int) -> float:
        if j == i or k == i:
            return 0.0
        u = [x[j][m] - x[i][m] for m in range(len(x[0]))]
        v = [x[k][m] - x[i][m] for m in range(len(x[0]))]
        return sum(a * b for a, b in zip(u, v, strict=True)) / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))

    ds, dt = dist(s), dist(t)
    d_loss = sum(_smooth_l1(ds[i][j], dt[i][j]) for i in range(n) for j in range(n)) / n**2
    a_loss = sum(_smooth_l1(angle(s, i, j, k), angle(t, i, j, k)) for i in range(n) for j in range(n) for k in range(n)) / n**3
    return d_loss, a_loss


def test_rkd_parts_match_triple_loop() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64) * 3
    d_loss, a_loss = rkd_losses(s, t)
    want_d, want_a = naive_rkd(s.tolist(), t.tolist())
    assert float(d_loss) == pytest.approx(want_d, abs=1e-12)
    assert float(a_loss) == pytest.approx(want_a, abs=1e-12)
    reg = R.build("rkd", 3, 4)
    assert float(reg(s, t)) == pytest.approx((want_d + 2 * want_a) / 2, abs=1e-12)


def test_rkd_chunked_equals_unchunked() -> None:
    from aft.regularizers import rkd

    x = torch.randn(7, 3, dtype=torch.float64)
    d1, a1 = rkd._pairwise_differences(x, 7)
    d2, a2 = rkd._pairwise_differences(x, 2)
    torch.testing.assert_close(d1, d2)
    torch.testing.assert_close(a1, a2)


def test_gradcheck_rkd() -> None:
    reg = R.build("rkd", 3, 4)
    psi = torch.randn(5, 4, dtype=torch.float64)
    phi = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: reg(p, psi), (phi,), eps=1e-6, atol=1e-6)


def test_gradcheck_kd_features_and_regressor() -> None:
    reg = R.build("kd", 3, 4).double()
    names = [n for n, _ in reg.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in reg.named_parameters()]
    psi = torch.randn(5, 4, dtype=torch.float64)
    phi = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)

    def f(p: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return functional_call(reg, dict(zip(names, ps, strict=True)), (p, psi))

    assert torch.autograd.gradcheck(f, (phi, *params), eps=1e-6, atol=1e-6)


def test_kd_is_mean_squared_error_of_linear_map() -> None:
    reg = R.build("kd", 3, 4)
    phi, psi = torch.randn(6, 3), torch.randn(6, 4)
    want = ((phi @ reg.regressor.weight.T + reg.regressor.bias - psi) ** 2).mean()
    torch.testing.assert_close(reg(phi, psi), want)
    (group,) = reg.param_groups(lr=3e-4, weight_decay=0.05)
    assert group["lr"] == 3e-4 and group["weight_decay"] == 0.05 and len(group["params"]) == 2


@pytest.mark.parametrize("name", ["kd", "rkd"])
@pytest.mark.parametrize("case", ["batch1", "batch2", "constant", "float16", "bfloat16"])
def test_baseline_numerics(name: str, case: str) -> None:
    reg = R.build(name, 6, 10)
    batch = {"batch1": 1, "batch2": 2}.get(case, 8)
    phi, psi = torch.randn(batch, 6), torch.randn(batch, 10)
    if case == "constant":
        phi, psi = torch.ones(batch, 6), torch.ones(batch, 10)
    if case in ("float16", "bfloat16"):
        phi, psi = phi.to(getattr(torch, case)), psi.to(getattr(torch, case))
    phi.requires_grad_(True)
    loss = reg(phi, psi)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert phi.grad is not None and torch.isfinite(phi.grad).all()


def test_none_returns_zero_tensor_and_reads_no_teacher() -> None:
    reg = R.build("none", 3, 4)
    assert reg.uses_teacher is False and reg.param_groups(1e-3, 0.0) == []
    loss = reg(torch.randn(5, 3, requires_grad=True), None)  # type: ignore[arg-type]
    assert isinstance(loss, torch.Tensor) and loss.shape == () and float(loss) == 0.0
    assert float(reg(torch.randn(5, 3), torch.randn(5, 4))) == 0.0


def test_ft_prepare_trains_paraphraser_and_loss_works() -> None:
    torch.manual_seed(0)
    feats = torch.randn(200, 4) @ torch.randn(4, 12)  # rank-4 teacher features: compressible
    reg = R.build("ft", 5, 12, factor_dim=4, hidden_dim=32, paraphraser_steps=300, paraphraser_lr=1e-2)
    assert reg.needs_prepare
    with pytest.raises(ConfigError, match="prepare"):
        reg(torch.randn(3, 5), torch.randn(3, 12))
    before = float(((reg.decoder(reg.encoder(feats)) - feats) ** 2).mean())
    reg.prepare(R.PrepareContext(feats, torch.zeros(200, dtype=torch.long), 2))
    after = float(((reg.decoder(reg.encoder(feats)) - feats) ** 2).mean())
    assert after < 0.3 * before
    assert all(not p.requires_grad for p in [*reg.encoder.parameters(), *reg.decoder.parameters()])
    (group,) = reg.param_groups(1e-3, 0.01)
    assert {id(p) for p in group["params"]} == {id(p) for p in reg.translator.parameters()}
    phi = torch.randn(6, 5, requires_grad=True)
    psi = feats[:6]
    loss = reg(phi, psi)
    out = torch.nn.functional.normalize(reg.translator(phi), dim=1)
    fac = torch.nn.functional.normalize(reg.encoder(psi), dim=1)
    torch.testing.assert_close(loss, (out - fac).abs().mean())
    loss.backward()
    assert torch.isfinite(phi.grad).all() and all(p.grad is None for p in reg.encoder.parameters())
    # a prepared state dict restores the paraphraser in a fresh module
    fresh = R.build("ft", 5, 12, factor_dim=4, hidden_dim=32)
    fresh.load_state_dict(reg.state_dict())
    torch.testing.assert_close(fresh(phi, psi), loss)


def test_registry_lists_all_methods_and_errors_name_valid_ones() -> None:
    expected = {"aft", "aft-dense", "aft-rbf", "aft-no-kernel", "aft-fixed", "aft-product", "kd", "kd-fields", "rkd", "ft", "btune", "kernel-kd", "none"}
    assert set(R.REGULARIZERS.names()) == expected
    with pytest.raises(UnknownNameError) as err:
        R.build("aft2", 3, 4)
    assert "valid methods: aft, aft-dense" in str(err.value) and "rkd" in str(err.value)
    with pytest.raises(ConfigError, match="valid options: prior_lr, kernel_form, check_finite"):
        R.build("aft", 3, 4, prior_rl=0.1)

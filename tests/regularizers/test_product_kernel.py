"""The tensor-product combination of teacher blocks: the kernel route against the explicit einsum.

The oracle here builds the product features with ``einsum('bi,bj->bij')`` (B x d1 x d2), centres
and row-normalizes them in feature space and forms both kernels, all with plain torch ops written
in this file, in float64; the library computes the same value from per-block B x B kernels.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import aft.regularizers as R
from aft.errors import ConfigError, UnknownNameError
from aft.regularizers.blocks import FeatureBlocks, center_normalize_kernel, combined_kernel
from aft.regularizers.kernels import blocks_sq_diff_sum, distance_from_sum, kernel_sq_diff_sum

F64 = torch.float64


def _cn(x: torch.Tensor) -> torch.Tensor:
    xc = x - x.mean(dim=0, keepdim=True)
    return xc / (xc.norm(dim=1, keepdim=True) + 1e-8)


def _explicit_features(psi: torch.Tensor, rho: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    w = psi * rho
    parts = torch.split(w, sizes, dim=1)
    out = parts[0]
    for p in parts[1:]:
        out = torch.einsum("bi,bj->bij", out, p).reshape(psi.shape[0], -1)
    return out


def _explicit_r(phi: torch.Tensor, psi: torch.Tensor, rho: torch.Tensor, sizes: list[int], rbf: bool = False) -> torch.Tensor:
    a, c = _cn(phi), _cn(_explicit_features(psi, rho, sizes))
    if rbf:
        ka, kc = torch.exp(-torch.cdist(a, a) ** 2), torch.exp(-torch.cdist(c, c) ** 2)
    else:
        ka, kc = a @ a.T, c @ c.T
    return torch.sqrt(((ka - kc) ** 2).mean() + 1e-8)


def _data(batch: int, d_phi: int, sizes: list[int], seed: int = 0, offset: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(batch, d_phi, generator=g, dtype=F64)
    psi = torch.randn(batch, sum(sizes), generator=g, dtype=F64) + offset
    s = torch.randn(sum(sizes), generator=g, dtype=F64)
    return phi, psi, s


def test_kernel_centring_and_normalization_equal_feature_space() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 5, generator=g, dtype=F64) * 3 + 2
    torch.testing.assert_close(center_normalize_kernel(x @ x.T), _cn(x) @ _cn(x).T, atol=1e-12, rtol=0)
    # a row that is zero after centring (the mean of the others): ~0 / (0 + 1e-8) on both routes
    x[2] = x[[0, 1, 3, 4, 5, 6]].mean(dim=0)
    got, want = center_normalize_kernel(x @ x.T), _cn(x) @ _cn(x).T
    assert got[2].abs().max() < 1e-5 and want[2].abs().max() < 1e-5
    keep = [0, 1, 3, 4, 5, 6]
    torch.testing.assert_close(got[keep][:, keep], want[keep][:, keep], atol=1e-12, rtol=0)


@pytest.mark.parametrize("sizes", [[3, 4], [2, 3, 2], [5, 1]])
def test_product_kernel_equals_explicit_outer_product(sizes: list[int]) -> None:
    phi, psi, s = _data(6, 3, sizes, offset=0.7)
    rho = torch.sigmoid(s)
    c = _cn(_explicit_features(psi, rho, sizes))
    got = combined_kernel(psi, FeatureBlocks.from_sizes(sizes), "product", rho)
    torch.testing.assert_close(got, c @ c.T, atol=1e-12, rtol=0)
    total = blocks_sq_diff_sum(phi, psi, FeatureBlocks.from_sizes(sizes), "product", psi_weights=rho)
    torch.testing.assert_close(distance_from_sum(total, 6), _explicit_r(phi, psi, rho, sizes), atol=1e-12, rtol=0)


def test_concat_kernel_route_equals_the_existing_aft_path() -> None:
    phi, psi, s = _data(8, 4, [3, 5], seed=1)
    rho = torch.sigmoid(s)
    route = blocks_sq_diff_sum(phi, psi, FeatureBlocks.from_sizes([3, 5]), "concat", psi_weights=rho)
    torch.testing.assert_close(route, kernel_sq_diff_sum(phi, psi, psi_weights=rho), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["aft", "aft-fixed", "aft-rbf"])
def test_module_value_and_gradients_match_explicit_product(name: str) -> None:
    sizes = [3, 4]
    phi0, psi, s0 = _data(7, 3, sizes, seed=2, offset=0.5)
    reg = R.build(name, 3, 7, combine="product", blocks={"img": (0, 3), "txt": (3, 7)}).double()
    with torch.no_grad():
        reg.s.copy_(s0)
    reg.s.requires_grad_(True)
    phi = phi0.clone().requires_grad_(True)
    loss = reg(phi, psi)
    loss.backward()
    phi_ref, s_ref = phi0.clone().requires_grad_(True), s0.clone().requires_grad_(True)
    ref = _explicit_r(phi_ref, psi, torch.sigmoid(s_ref), sizes, rbf=name == "aft-rbf")
    ref.backward()
    torch.testing.assert_close(loss, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(phi.grad, phi_ref.grad, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(reg.s.grad, s_ref.grad, atol=1e-10, rtol=1e-8)
    assert s_ref.grad is not None and s_ref.grad.abs().sum() > 0


def test_product_module_passes_gradcheck() -> None:
    reg = R.build("aft-product", 3, 5, blocks=[2, 3]).double()
    phi, psi, s = _data(5, 3, [2, 3], seed=4, offset=0.3)
    phi.requires_grad_(True)
    s.requires_grad_(True)

    def f(phi_: torch.Tensor, s_: torch.Tensor) -> torch.Tensor:
        return functional_call(reg, {"s": s_}, (phi_, psi))

    assert torch.autograd.gradcheck(f, (phi, s), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_product_differs_from_concat_and_one_block_product_is_concat() -> None:
    phi, psi, s = _data(8, 3, [3, 4], seed=5)
    concat, prod = R.build("aft", 3, 7).double(), R.build("aft-product", 3, 7, blocks=[3, 4]).double()
    one = R.build("aft", 3, 7, combine="product").double()  # blocks=None: a single block
    for reg in (concat, prod, one):
        with torch.no_grad():
            reg.s.copy_(s)
    assert abs(float(concat(phi, psi).detach()) - float(prod(phi, psi).detach())) > 1e-3
    torch.testing.assert_close(one(phi, psi), concat(phi, psi), atol=1e-12, rtol=0)


def test_product_row_blocks_add_up_to_the_full_sum() -> None:
    phi, psi, s = _data(9, 3, [2, 3], seed=6)
    reg = R.build("aft-product", 3, 5, blocks=[2, 3]).double()
    full = reg.partial_sum(phi, psi)
    parts = reg.partial_sum(phi, psi, slice(0, 4)) + reg.partial_sum(phi, psi, torch.arange(4, 9))
    torch.testing.assert_close(parts, full, atol=1e-12, rtol=0)


def test_float32_product_kernel_is_close_to_float64() -> None:
    # positive, offset features (post-ReLU-like): the double centring cancels a large mean
    phi, psi, s = _data(64, 16, [32, 24], seed=7)
    psi = psi.abs() + 1.0
    reg64 = R.build("aft-product", 16, 56, blocks=[32, 24]).double()
    reg32 = R.build("aft-product", 16, 56, blocks=[32, 24])
    want = float(reg64(phi, psi))
    got = float(reg32(phi.float(), psi.float()))
    assert got == pytest.approx(want, rel=1e-3)


def test_bad_blocks_and_options_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"next block must start at column 3"):
        R.build("aft-product", 3, 7, blocks={"a": (0, 3), "b": (4, 7)})
    with pytest.raises(ConfigError, match=r"cover 6 columns but the teacher features have 7"):
        R.build("aft-product", 3, 7, blocks=[3, 3])
    with pytest.raises(ConfigError, match=r"has no gram form"):
        R.build("aft", 3, 7, combine="product", kernel_form="gram")
    with pytest.raises(UnknownNameError, match=r"unknown block combination 'outer'; valid block combinations: concat, product"):
        R.build("aft", 3, 7, combine="outer")
    with pytest.raises(ConfigError, match=r"must be positive"):
        FeatureBlocks.from_sizes([3, 0])


def test_loop_hands_the_store_blocks_to_the_regularizer() -> None:
    from aft.training.config import TrainConfig
    from aft.training.loop import _build_regularizer

    cfg = TrainConfig(method="aft-product")
    reg = _build_regularizer(R.REGULARIZERS.get("aft-product"), 3, 7, cfg, {"t1@image": (0, 3), "t2@text": (3, 7)})
    assert reg.blocks == FeatureBlocks(("t1@image", "t2@text"), ((0, 3), (3, 7)))
    # the default method keeps its single-block concatenation whatever the store's blocks
    plain = _build_regularizer(R.REGULARIZERS.get("aft"), 3, 7, TrainConfig(method="aft"), {"a": (0, 3), "b": (3, 7)})
    assert plain.combine == "concat" and plain.blocks is not None and plain.blocks.sizes == (7,)


def test_batch_of_one_and_constant_batches_give_zero_not_nan_gradients() -> None:
    reg = R.build("aft-product", 3, 5, blocks=[2, 3])
    for psi in (torch.randn(1, 5), torch.ones(4, 5)):
        phi = torch.randn(psi.shape[0], 3, requires_grad=True)
        loss = reg(phi, psi)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(reg.s.grad).all() and torch.isfinite(phi.grad).all()
        reg.s.grad = None


def test_kd_per_field_weighs_each_block_equally() -> None:
    phi, psi, _ = _data(6, 3, [2, 5], seed=8)
    reg = R.build("kd-fields", 3, 7, blocks=[2, 5]).double()
    w, b = reg.regressor.weight, reg.regressor.bias
    err = (phi @ w.T + b - psi) ** 2
    want = 0.5 * (err[:, :2].mean() + err[:, 2:].mean())
    torch.testing.assert_close(reg(phi, psi), want)
    plain = R.build("kd", 3, 7).double()
    plain.load_state_dict(reg.state_dict())
    torch.testing.assert_close(plain(phi, psi), err.mean())  # the default is unchanged
    assert abs(float(want.detach()) - float(err.mean().detach())) > 1e-6

"""Batch-kernel discrepancy shared by the AFT family and kernel KD, in two interchangeable forms.

For student features Phi (B x d_phi) and (weighted) teacher features Psi (B x d_psi): center each
column over the batch, divide each row by its L2 norm + 1e-8, form the B x B kernels K_phi and
K_psi (linear: dot products; rbf: exp(-||a - b||^2)), and compare them:

    total = sum_{r in rows, c} (K_phi[r, c] - K_psi[r, c])^2
    R     = sqrt(total / B^2 + 1e-8)            (rows = all rows)

Linear kernels have two exact forms (`form`): ``"explicit"`` builds the kernels, costing about
B^2 (d_phi + d_psi); ``"gram"`` uses ||A_r A^T - C_r C^T||_F^2 = <A_r^T A_r, A^T A> +
<C_r^T C_r, C^T C> - 2 <A_r^T C_r, A^T C>, costing about B (d_phi^2 + d_psi^2 + d_phi d_psi).
``"auto"`` picks the cheaper by that count.

AFT's teacher side is Psi * rho with Psi fixed and only rho learned. Passing rho as
``psi_weights`` (instead of a pre-multiplied Psi) gives the same value but a cheaper explicit
form: Psi is centered without autograd (centering commutes with a column scaling), the row norms
are a matrix-vector product (Psi_c^2) rho^2, and the normalization divides the B x B kernel
instead of the B x d_psi features, so the backward pass does one B x B x d_psi product and a few
B x d_psi element-wise operations instead of the full normalization graph.

Data parallelism (exact global-batch kernel). With W ranks each holding b = B / W rows:

1. gather Phi from all ranks WITH gradient (e.g. ``torch.distributed.nn.functional.all_gather``)
   and Psi (already rho-weighted through the regularizer, see ``partial_sum`` on the
   regularizers) into global B-row matrices, in rank order;
2. each rank computes ``local = kernel_sq_diff_sum(Phi, Psi, rows=slice(rank*b, (rank+1)*b))``:
   its own rows against ALL columns, centered with the GLOBAL batch mean;
3. ``total = all_reduce(local.detach(), SUM)``; the exact global value is
   ``R = distance_from_sum(total, B) = sqrt(total / B^2 + 1e-8)`` (identical on every rank);
4. the term each rank adds to its loss is ``rank_surrogate(local, total, B, W)``
   = ``W * local / (2 B^2 R)`` (value for logging: R). Since dR = d(total) / (2 B^2 R), and the
   gather's backward sums every rank's contribution into the owner's rows while DDP averages
   parameter gradients over W ranks, the averaged gradient equals the single-process gradient of
   R on the global batch exactly (for Phi's parameters and for replicated parameters such as s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch

from aft.errors import ConfigError

if TYPE_CHECKING:
    from aft.regularizers.blocks import FeatureBlocks

ROW_EPS = 1e-8
R_EPS = 1e-8
Form = Literal["auto", "explicit", "gram"]
Kernel = Literal["linear", "rbf"]
Rows = slice | torch.Tensor | None
FORMS = ("auto", "explicit", "gram")


def center_normalize(x: torch.Tensor) -> torch.Tensor:
    """Center each column over the batch, then divide each row by (its L2 norm + 1e-8)."""
    xc = x - x.mean(dim=0, keepdim=True)
    return xc / (torch.linalg.vector_norm(xc, dim=1, keepdim=True) + ROW_EPS)


def _num_rows(rows: Rows, batch: int) -> int:
    if rows is None:
        return batch
    if isinstance(rows, slice):
        return len(range(*rows.indices(batch)))
    return int(rows.numel()) if rows.dtype != torch.bool else int(rows.sum())


def choose_form(batch: int, d_phi: int, d_psi: int, num_rows: int | None = None) -> str:
    """The cheaper exact form for a linear kernel by multiply-add count."""
    b = batch if num_rows is None else num_rows
    explicit = b * batch * (d_phi + d_psi)
    gram_dims = d_phi * d_phi + d_psi * d_psi + d_phi * d_psi
    gram = (batch if num_rows is None else batch + b) * gram_dims
    return "gram" if gram < explicit else "explicit"


def _explicit_linear(a: torch.Tensor, c: torch.Tensor, rows: Rows) -> torch.Tensor:
    a_r, c_r = (a, c) if rows is None else (a[rows], c[rows])
    diff = a_r @ a.T - c_r @ c.T
    return (diff * diff).sum()


def _center_normalize_backward(xc: torch.Tensor, r: torch.Tensor, q: torch.Tensor, g_a: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. x of a = center_normalize(x), given xc = centered x, r = ||xc||, q = r + eps."""
    # a = xc / q: d xc = (g_a - u (u . g_a) r / q) / q with u = xc / r (every factor bounded, so a
    # zero row gets a zero gradient, also in float32); centering: subtract the column mean
    u = xc / r.clamp_min(1e-30)[:, None]
    g_xc = (g_a - u * ((u * g_a).sum(dim=1) * (r / q))[:, None]) / q[:, None]
    return g_xc - g_xc.mean(dim=0, keepdim=True)


def _row_index(rows: slice | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    if isinstance(rows, slice):
        return torch.arange(batch, device=device)[rows]
    return rows.nonzero().squeeze(1) if rows.dtype == torch.bool else rows.to(torch.long)


class _WeightedLinearSqDiffSum(torch.autograd.Function):
    """The full-batch explicit weighted form in one autograd node with a hand-written backward.

    Same value and gradients as building the kernels of center_normalize(phi) and
    center_normalize(psi * weights) with torch ops (tested against that and with gradcheck), but
    about a third of the element-wise operations autograd would record: on a CPU the dispatch of
    each small op, not the arithmetic, is where the composed form spends most of its time.
    Gradients flow to phi and the weights; psi is a constant.
    """

    @staticmethod
    def forward(ctx: Any, phi: torch.Tensor, psi: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        xc = phi - phi.mean(dim=0, keepdim=True)
        r = torch.linalg.vector_norm(xc, dim=1)
        q = r + ROW_EPS
        a = xc / q[:, None]
        p = psi - psi.mean(dim=0, keepdim=True)
        raw = (p * (weights * weights)) @ p.T
        m2 = torch.diagonal(raw).clone()  # raw is divided in place below
        m = torch.sqrt(m2.clamp_min(1e-30))
        n = m + ROW_EPS
        k_psi = raw.div_(n[:, None] * n[None, :])  # raw is not needed again
        diff = torch.addmm(k_psi, a, a.T, beta=-1.0)  # K_phi - K_psi
        ctx.save_for_backward(xc, r, q, a, p, weights, m2, m, n, k_psi, diff)
        return (diff * diff).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, torch.Tensor | None]:  # type: ignore[override]
        xc, r, q, a, p, weights, m2, m, n, k_psi, diff = ctx.saved_tensors
        g_diff = diff * (2.0 * grad)  # symmetric, as both kernels are
        d_phi = d_w = None
        if ctx.needs_input_grad[0]:
            d_phi = _center_normalize_backward(xc, r, q, 2.0 * (g_diff @ a))
        if ctx.needs_input_grad[2]:
            # K_psi = raw / (n n^T), n = sqrt(diag raw) + eps, raw = P diag(w^2) P^T
            g_n = (g_diff * k_psi).sum(dim=1) * (2.0 / n)
            g_raw = g_diff.div(n[:, None] * n[None, :]).neg_()
            g_m2 = torch.where(m2 > 1e-30, g_n / (2.0 * m), torch.zeros_like(m))
            g_raw.diagonal().add_(g_m2)
            d_w = ((g_raw @ p) * p).sum(dim=0) * (2.0 * weights)
        return d_phi, None, d_w


class _WeightedLinearRowsSqDiffSum(torch.autograd.Function):
    """`_WeightedLinearSqDiffSum` for the rows `idx` against all B columns (the data-parallel block).

    The row norms of Psi * weights come from a matrix-vector product (the block has no full
    diagonal); duplicate indices count twice, as indexing would.
    """

    @staticmethod
    def forward(ctx: Any, phi: torch.Tensor, psi: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        xc = phi - phi.mean(dim=0, keepdim=True)
        r = torch.linalg.vector_norm(xc, dim=1)
        q = r + ROW_EPS
        a = xc / q[:, None]
        p = psi - psi.mean(dim=0, keepdim=True)
        w2 = weights * weights
        m2 = (p * p) @ w2
        m = torch.sqrt(m2.clamp_min(1e-30))
        n = m + ROW_EPS
        k_r = ((p[idx] * w2) @ p.T).div_(n[idx][:, None] * n[None, :])
        diff = torch.addmm(k_r, a[idx], a.T, beta=-1.0)  # K_phi - K_psi on the rows idx
        ctx.save_for_backward(xc, r, q, a, p, weights, m2, m, n, k_r, diff, idx)
        return (diff * diff).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, torch.Tensor | None, None]:  # type: ignore[override]
        xc, r, q, a, p, weights, m2, m, n, k_r, diff, idx = ctx.saved_tensors
        g_diff = diff * (2.0 * grad)  # (rows, B)
        d_phi = d_w = None
        if ctx.needs_input_grad[0]:
            g_a = g_diff.T @ a[idx]  # a as the columns
            g_a.index_add_(0, idx, g_diff @ a)  # a as the rows
            d_phi = _center_normalize_backward(xc, r, q, g_a)
        if ctx.needs_input_grad[2]:
            # K_psi[i, j] = raw[i, j] / (n_i n_j), n = sqrt((P * P) @ w^2) + eps, raw = P_idx diag(w^2) P^T
            gk = g_diff * k_r
            g_n = gk.sum(dim=0) / n
            g_n.index_add_(0, idx, gk.sum(dim=1) / n[idx])
            g_raw = g_diff.div(n[idx][:, None] * n[None, :]).neg_()
            g_m2 = torch.where(m2 > 1e-30, g_n / (2.0 * m), torch.zeros_like(m))
            d_w2 = ((g_raw @ p) * p[idx]).sum(dim=0) + (p * p).T @ g_m2
            d_w = d_w2 * (2.0 * weights)
        return d_phi, None, d_w, None


def _gram_linear(a: torch.Tensor, c: torch.Tensor, rows: Rows) -> torch.Tensor:
    aa, cc, ac = a.T @ a, c.T @ c, a.T @ c
    if rows is None:
        total = (aa * aa).sum() + (cc * cc).sum() - 2 * (ac * ac).sum()
    else:
        a_r, c_r = a[rows], c[rows]
        total = (a_r.T @ a_r * aa).sum() + (c_r.T @ c_r * cc).sum() - 2 * (a_r.T @ c_r * ac).sum()
    # exact in real arithmetic; rounding can leave a tiny negative value
    return total.clamp_min(0.0)


def _rbf(x: torch.Tensor, rows: Rows) -> torch.Tensor:
    x_r = x if rows is None else x[rows]
    sq = x.square().sum(1)
    sq_r = x_r.square().sum(1)
    dist2 = (sq_r[:, None] + sq[None, :] - 2 * x_r @ x.T).clamp_min(0.0)
    return torch.exp(-dist2)


def kernel_sq_diff_sum(
    phi: torch.Tensor,
    psi: torch.Tensor,
    rows: Rows = None,
    kernel: Kernel = "linear",
    form: Form = "auto",
    psi_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum of squared kernel differences over `rows` (default all) against all B columns.

    Args:
        phi: student features of the (global) batch, ``(B, d_phi)``, with gradient.
        psi: teacher features of the same batch ``(B, d_psi)``: weighted already, or raw with
            the weights in `psi_weights`.
        rows: the rows to sum over (a slice, an index or boolean tensor); None = all rows.
            Centering always uses the mean of the whole batch passed in.
        kernel: ``"linear"`` (AFT) or ``"rbf"`` (exp(-squared distance)).
        form: ``"explicit"``, ``"gram"`` (linear only) or ``"auto"``.
        psi_weights: optional per-column weights ``(d_psi,)`` (AFT's rho): the teacher side is
            Psi * psi_weights. Same value and gradients as pre-multiplying; when psi needs no
            gradient the explicit linear form is cheaper this way.

    Returns:
        A scalar tensor; summing it over disjoint row blocks gives the full-batch value.
    """
    if form not in FORMS:
        raise ConfigError(f"unknown kernel form {form!r}; valid forms: {', '.join(FORMS)}")
    if kernel not in ("linear", "rbf"):
        raise ConfigError(f"unknown kernel {kernel!r}; valid kernels: linear, rbf")
    if kernel == "rbf" and form == "gram":
        raise ConfigError("the rbf kernel has no gram form; use kernel_form='explicit' or 'auto'")
    if psi_weights is not None and psi_weights.shape != (psi.shape[1],):
        raise ConfigError(f"psi_weights must have shape ({psi.shape[1]},), got {tuple(psi_weights.shape)}")
    if kernel == "linear" and form == "auto":
        form = choose_form(phi.shape[0], phi.shape[1], psi.shape[1], None if rows is None else _num_rows(rows, phi.shape[0]))
    if kernel == "linear" and form == "explicit" and psi_weights is not None and not psi.requires_grad:
        if rows is None:
            return _WeightedLinearSqDiffSum.apply(phi, psi, psi_weights)
        return _WeightedLinearRowsSqDiffSum.apply(phi, psi, psi_weights, _row_index(rows, phi.shape[0], phi.device))
    if psi_weights is not None:
        psi = psi * psi_weights
    a, c = center_normalize(phi), center_normalize(psi)
    if kernel == "rbf":
        diff = _rbf(a, rows) - _rbf(c, rows)
        return (diff * diff).sum()
    return _gram_linear(a, c, rows) if form == "gram" else _explicit_linear(a, c, rows)


def blocks_sq_diff_sum(
    phi: torch.Tensor,
    psi: torch.Tensor,
    blocks: FeatureBlocks,
    combine: str,
    rows: Rows = None,
    kernel: Kernel = "linear",
    psi_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """`kernel_sq_diff_sum` with the teacher kernel built from per-block kernels combined by `combine`.

    The teacher side is the blocks of Psi (a `aft.regularizers.blocks.FeatureBlocks`), each scaled
    by its slice of `psi_weights`, combined by ``"concat"`` or ``"product"`` (the tensor product,
    never materialized: its kernel is the elementwise product of the block kernels), then centred
    and row-normalized exactly on the B x B kernel. Cost O(B^2 (d_phi + d_psi)) for either.
    Centring uses the whole batch; `rows` selects the rows summed (the data-parallel block).
    """
    from aft.regularizers.blocks import combined_kernel

    if kernel not in ("linear", "rbf"):
        raise ConfigError(f"unknown kernel {kernel!r}; valid kernels: linear, rbf")
    if psi_weights is not None and psi_weights.shape != (psi.shape[1],):
        raise ConfigError(f"psi_weights must have shape ({psi.shape[1]},), got {tuple(psi_weights.shape)}")
    a = center_normalize(phi)
    k_psi = combined_kernel(psi, blocks, combine, psi_weights)
    k_psi_r = k_psi if rows is None else k_psi[rows]
    if kernel == "rbf":
        # ||c_i - c_j||^2 = C_ii + C_jj - 2 C_ij for the normalized teacher rows c (never built)
        d = torch.diagonal(k_psi)
        d_r = d if rows is None else d[rows]
        diff = _rbf(a, rows) - torch.exp(-(d_r[:, None] + d[None, :] - 2 * k_psi_r).clamp_min(0.0))
    else:
        a_r = a if rows is None else a[rows]
        diff = a_r @ a.T - k_psi_r
    return (diff * diff).sum()


def distance_from_sum(total: torch.Tensor, batch_size: int) -> torch.Tensor:
    """R = sqrt(total / B^2 + 1e-8); the 1e-8 keeps R differentiable when the kernels agree."""
    return torch.sqrt(total / float(batch_size) ** 2 + R_EPS)


def kernel_distance(
    phi: torch.Tensor, psi: torch.Tensor, kernel: Kernel = "linear", form: Form = "auto", psi_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The full-batch AFT discrepancy R = sqrt(mean over B^2 entries of (K_phi - K_psi)^2 + 1e-8)."""
    return distance_from_sum(kernel_sq_diff_sum(phi, psi, None, kernel, form, psi_weights), phi.shape[0])


def aft_kernel_distance(
    phi: torch.Tensor, psi: torch.Tensor, rho: torch.Tensor, kernel: Kernel = "linear", form: Form = "auto"
) -> torch.Tensor:
    """AFT's R with explicit feature weights: the teacher kernel is built from Psi * rho."""
    return kernel_distance(phi, psi, kernel, form, psi_weights=rho)


def rank_surrogate(local_sum: torch.Tensor, global_sum: torch.Tensor, batch_size: int, world_size: int) -> torch.Tensor:
    """Per-rank loss term whose DDP-averaged gradient equals the gradient of the global R.

    ``W * local / (2 B^2 R)`` with R from the (detached, all-reduced) ``global_sum``; see the module
    docstring for the protocol.
    """
    r = distance_from_sum(global_sum.detach(), batch_size)
    return world_size * local_sum / (2.0 * float(batch_size) ** 2 * r)

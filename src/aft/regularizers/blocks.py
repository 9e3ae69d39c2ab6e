"""Block structure of the teacher features (teachers, layers, fields) and how blocks combine.

The teacher side of AFT is Psi (B x d_psi), the side-by-side columns of several blocks: one per
teacher, per layer of a multi-layer teacher, or per field of a multimodal input (``minilm@text``,
``efficientnet-lite0@image``). `FeatureBlocks` holds that structure as data (names and column
ranges, e.g. a feature source's ``column_ranges``), so two combinations of the same blocks exist:

- ``concat`` (the default, the paper's multi-teacher AFT): the features are the concatenation
  [psi_1 rho_1, ..., psi_m rho_m]; its raw kernel is the SUM of the per-block kernels.
- ``product`` (the paper's vision-language AFT): the features are the tensor product
  (psi_1 rho_1) (x) ... (x) (psi_m rho_m), flattened to prod_k d_k columns (for two blocks,
  ``einsum('bi,bj->bij')``). <a (x) b, c (x) d> = <a, c> <b, d>, so its raw kernel is the
  elementwise PRODUCT of the per-block kernels: O(B^2 sum_k d_k) instead of O(B^2 prod_k d_k).

Either raw kernel K = X X^T (X the combined features, never built) then gets AFT's
centring and row normalization exactly, on the kernel (`center_normalize_kernel`): centring the
columns of X over the batch is X_c = H X with H = I - 11^T / B, so X_c X_c^T = H K H (double
centring); the row norms of X_c are sqrt(diag(H K H)); dividing each row by (norm + 1e-8) divides
entry (i, j) by (n_i + 1e-8)(n_j + 1e-8). The result equals the kernel of
`aft.regularizers.kernels.center_normalize` applied to the explicit features (tested in float64).

rho keeps one weight per teacher column (d_psi = sum_k d_k of them) in both combinations: block
k's slice of rho scales block k before the combination.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from aft.errors import ConfigError
from aft.registry import Registry

ROW_EPS = 1e-8

#: raw kernel of the combined features from the per-block kernels (all B x B)
Combine = Callable[[list[torch.Tensor]], torch.Tensor]
COMBINES: Registry[Combine] = Registry("block combination")


def _sum(kernels: list[torch.Tensor]) -> torch.Tensor:
    out = kernels[0]
    for k in kernels[1:]:
        out = out + k
    return out


def _prod(kernels: list[torch.Tensor]) -> torch.Tensor:
    out = kernels[0]
    for k in kernels[1:]:
        out = out * k
    return out


COMBINES.add("concat", _sum)
COMBINES.add("product", _prod)


@dataclass(frozen=True)
class FeatureBlocks:
    """Named, contiguous column blocks covering the teacher features ``[0, dim)`` in order.

    Attributes:
        names: one name per block (a teacher, ``"teacher[layer=i]"``, ``"teacher@field"``).
        ranges: per block, its ``(start, end)`` columns; consecutive and covering ``[0, dim)``.
    """

    names: tuple[str, ...]
    ranges: tuple[tuple[int, int], ...]

    @property
    def dim(self) -> int:
        """Total number of teacher columns (the sum of the block sizes)."""
        return self.ranges[-1][1] if self.ranges else 0

    @property
    def sizes(self) -> tuple[int, ...]:
        """Per block, its number of columns."""
        return tuple(b - a for a, b in self.ranges)

    @property
    def product_dim(self) -> int:
        """Number of columns of the explicit tensor-product features (prod of the block sizes)."""
        out = 1
        for d in self.sizes:
            out *= d
        return out

    @classmethod
    def from_sizes(cls, sizes: Sequence[int], names: Sequence[str] | None = None) -> FeatureBlocks:
        """Consecutive blocks of the given sizes (names default to ``block0``, ``block1``, ...)."""
        names = list(names) if names is not None else [f"block{i}" for i in range(len(sizes))]
        if len(names) != len(sizes):
            raise ConfigError(f"{len(names)} block names for {len(sizes)} block sizes; give one name per block")
        ranges, start = [], 0
        for d in sizes:
            if int(d) <= 0:
                raise ConfigError(f"feature block sizes must be positive, got {list(sizes)}")
            ranges.append((start, start + int(d)))
            start += int(d)
        return cls(tuple(names), tuple(ranges))

    @classmethod
    def from_ranges(cls, column_ranges: Mapping[str, Sequence[int]]) -> FeatureBlocks:
        """From a feature source's ``column_ranges`` (``{name: (start, end)}``), sorted by start.

        Raises:
            ConfigError: the blocks overlap, leave a gap or are empty.
        """
        items = sorted(((str(n), (int(r[0]), int(r[1]))) for n, r in column_ranges.items()), key=lambda kv: kv[1][0])
        expected = 0
        for name, (a, b) in items:
            if a != expected or b <= a:
                raise ConfigError(
                    f"teacher feature block {name!r} spans columns [{a}, {b}) but the next block must start at "
                    f"column {expected} and be non-empty; give blocks that tile the teacher features in order"
                )
            expected = b
        return cls(tuple(n for n, _ in items), tuple(r for _, r in items))

    @classmethod
    def coerce(cls, blocks: FeatureBlocks | Mapping[str, Sequence[int]] | Sequence[int] | None, dim: int) -> FeatureBlocks:
        """Blocks from a `FeatureBlocks`, ``column_ranges`` mapping or list of sizes; None = one block.

        Raises:
            ConfigError: the blocks do not cover exactly `dim` columns.
        """
        if blocks is None:
            out = cls(("teacher",), ((0, int(dim)),))
        elif isinstance(blocks, FeatureBlocks):
            out = blocks
        elif isinstance(blocks, Mapping):
            out = cls.from_ranges(blocks)
        else:
            out = cls.from_sizes([int(d) for d in blocks])
        if out.dim != int(dim):
            raise ConfigError(
                f"teacher feature blocks {dict(zip(out.names, out.ranges, strict=True))} cover {out.dim} columns "
                f"but the teacher features have {dim}; pass the feature source's column_ranges"
            )
        return out

    def block_kernels(self, psi: torch.Tensor, weights: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per block k, the raw B x B kernel (Psi_k diag(w_k^2)) Psi_k^T of its weighted columns."""
        out = []
        for a, b in self.ranges:
            p = psi[:, a:b]
            pw = p if weights is None else p * (weights[a:b] * weights[a:b])
            out.append(pw @ p.T)
        return out

    def explicit_product(self, psi: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The tensor-product features ``(B, prod d_k)`` built explicitly (the reference; costly).

        For two blocks this is ``einsum('bi,bj->bij', psi_1 * rho_1, psi_2 * rho_2)`` flattened.
        """
        w = psi if weights is None else psi * weights
        out = w[:, self.ranges[0][0]:self.ranges[0][1]]
        for a, b in self.ranges[1:]:
            out = torch.einsum("bi,bj->bij", out, w[:, a:b]).reshape(psi.shape[0], -1)
        return out


def center_normalize_kernel(raw: torch.Tensor) -> torch.Tensor:
    """Kernel of centred, row-normalized features, computed from their raw kernel K = X X^T alone.

    Exactly ``center_normalize(X) @ center_normalize(X).T``: double centring H K H, then entry
    (i, j) divided by (n_i + 1e-8)(n_j + 1e-8) with n = sqrt(diag(H K H)); a row whose centred
    norm is below the kernel's rounding resolution (sqrt(64 eps max K_ii)) is a zero row.
    """
    kc = raw - raw.mean(dim=0, keepdim=True) - raw.mean(dim=1, keepdim=True) + raw.mean()
    m2 = torch.diagonal(kc)
    # The squared norm of a centred row, m2_i, is exact in real arithmetic, but the kernel carries
    # rounding of order eps * max_i K_ii: a row (almost) at the batch mean would get a norm made of
    # rounding noise, and noise / noise is not ~0 as in feature space. Rows whose m2 is below that
    # resolution are zero rows (as in feature space, where they come out ~1e-8); they get no gradient.
    tol = 64 * torch.finfo(raw.dtype).eps * torch.diagonal(raw).detach().abs().max()
    keep = (m2.detach() > tol).to(raw.dtype)
    n = torch.sqrt(m2.clamp_min(1e-30)) + ROW_EPS
    scale = keep / n
    return kc * (scale[:, None] * scale[None, :])


def combined_kernel(psi: torch.Tensor, blocks: FeatureBlocks, combine: str, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The centred, row-normalized B x B teacher kernel of the blocks combined by `combine`."""
    return center_normalize_kernel(COMBINES.get(combine)(blocks.block_kernels(psi, weights)))

"""`rkd`: relational knowledge distillation (Park et al. 2019): match pairwise distances and angles."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from aft.regularizers.base import REGULARIZERS, Regularizer
from aft.regularizers.inputs import validate_pair

_DIST_EPS = 1e-12


def _pairwise_differences(x: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances ``d[i, j] = ||x_j - x_i||`` (0 on the diagonal) and the angle tensor
    ``a[i, j, k] = <unit(x_j - x_i), unit(x_k - x_i)>`` (0 where j or k equals i), by row chunks
    so the B x B x d difference tensor is never held whole."""
    dists, angles = [], []
    for start in range(0, x.shape[0], chunk):
        diff = x[None, :, :] - x[start : start + chunk, None, :]  # (c, B, d): x_j - x_i
        sq = diff.square().sum(-1)
        d = sq.clamp_min(_DIST_EPS).sqrt()  # clamp: finite gradient for coinciding points
        unit = diff / d[..., None]  # exactly 0 where x_j == x_i (diff is 0)
        dists.append(d)
        angles.append(unit @ unit.transpose(1, 2))
    dist = torch.cat(dists)
    dist = dist * (1 - torch.eye(x.shape[0], dtype=dist.dtype, device=dist.device))
    return dist, torch.cat(angles)


def _chunk(batch: int, dim: int) -> int:
    return max(1, min(batch, (1 << 24) // max(1, batch * dim)))


def _relations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dist, angle = _pairwise_differences(x, _chunk(x.shape[0], x.shape[1]))
    positive = dist[dist > 0]
    return dist / positive.mean(), angle


def rkd_losses(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance loss, angle loss) of RKD; gradient flows to `student` only.

    Distance: smooth-L1 between the pairwise-distance matrices, each divided by its mean nonzero
    distance. Angle: smooth-L1 between the cosines of the angle at x_i of every triplet (i, j, k).
    """
    ds, a_s = _relations(student)
    with torch.no_grad():
        dt, a_t = _relations(teacher)
    return F.smooth_l1_loss(ds, dt), F.smooth_l1_loss(a_s, a_t)


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The distance part of `rkd_losses`."""
    return rkd_losses(student, teacher)[0]


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The angle part of `rkd_losses`."""
    return rkd_losses(student, teacher)[1]


@REGULARIZERS.register("rkd")
class RelationalKD(Regularizer):
    """Loss = (distance loss + 2 * angle loss) / 2; the teacher side carries no gradient.

    No parameters. Batches of one example have no relations and give a zero loss (still a tensor
    connected to the student features).
    """

    name = "rkd"

    def __init__(self, student_dim: int, teacher_dim: int, distance_weight: float = 1.0, angle_weight: float = 2.0, check_finite: bool = True) -> None:
        super().__init__(student_dim, teacher_dim)
        self.distance_weight = float(distance_weight)
        self.angle_weight = float(angle_weight)
        self.check_finite = check_finite
        self._last: dict[str, torch.Tensor] = {}

    def loss_term(self, student_features: torch.Tensor, teacher_features: torch.Tensor, labels: Any = None) -> torch.Tensor:
        phi, psi = validate_pair(student_features, teacher_features, self.student_dim, self.teacher_dim, self.check_finite)
        assert psi is not None
        if phi.shape[0] < 2:
            zero = phi.sum() * 0.0
            self._last = {"distance": zero.detach(), "angle": zero.detach()}
            return zero
        dist, angle = rkd_losses(phi, psi.detach())
        self._last = {"distance": dist.detach(), "angle": angle.detach()}
        return (self.distance_weight * dist + self.angle_weight * angle) / 2

    def metrics(self, loss: torch.Tensor) -> dict[str, float]:
        out = {"loss": float(loss.detach())}
        out.update({k: float(v) for k, v in self._last.items()})
        return out

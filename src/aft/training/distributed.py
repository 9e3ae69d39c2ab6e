"""Data-parallel helpers: process-group setup from torchrun's environment and global-batch gathers.

Loss terms that couple samples (AFT's kernel, RKD's distances...) must see the GLOBAL batch. Every
rank all-gathers the student features with gradient (teacher features and labels of the global
batch are read locally by id). Two exact ways to use them:

- full (any method): every rank computes the same global regularizer value. ``all_gather``'s
  backward sums the W identical per-rank contributions into each rank's local rows, and
  DistributedDataParallel divides by W.
- local rows (methods with ``partial_sum``, `local_rows_term`): each rank sums its own rows of the
  B x B kernel discrepancy against all columns, one scalar all-reduce gives the global sum and R,
  and each rank backpropagates ``W * local / (2 B^2 R)`` (`aft.regularizers.kernels`).

Either way the averaged gradient equals the single-process gradient of the global-batch loss.
"""

from __future__ import annotations

import datetime
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from aft.errors import ConfigError
from aft.regularizers.kernels import distance_from_sum, rank_surrogate


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (world_size 1 = not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group described by torchrun's environment (``WORLD_SIZE`` > 1), if any.

    Uses nccl on CUDA and gloo otherwise. Already-initialized groups are reused.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not dist.is_initialized():
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


class UnevenBatchError(ConfigError):
    """Data-parallel ranks passed tensors of different shapes to a gather (raised on every rank)."""


def check_same_shape(x: torch.Tensor, info: DistInfo, what: str = "batch") -> None:
    """Raise `UnevenBatchError` on EVERY rank unless all ranks hold `x` of the same shape.

    A gather of unequal tensors is not an error that gloo/nccl report: it aborts one process
    (uncatchable) or hangs. One small all-gather of the shapes first makes it one clear error.
    """
    if not info.enabled:
        return
    shape = torch.tensor([x.dim(), *x.shape, *([0] * (8 - x.dim()))][:9], dtype=torch.int64, device=x.device)
    shapes = [torch.empty_like(shape) for _ in range(info.world_size)]
    dist.all_gather(shapes, shape)
    seen = [tuple(int(v) for v in s[1 : 1 + int(s[0])]) for s in shapes]
    if len(set(seen)) > 1:
        raise UnevenBatchError(
            f"data-parallel ranks hold {what}es of different shapes ({', '.join(f'rank {r}: {s}' for r, s in enumerate(seen))}); "
            "every rank must pass the same number of samples per step: use a global batch size divisible by the "
            "number of processes and drop the incomplete last batch"
        )


def gather_with_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0 (rank order), keeping the gradient path.

    Raises:
        UnevenBatchError: on every rank, when the ranks' tensors differ in shape.
    """
    if not info.enabled:
        return x
    from torch.distributed.nn.functional import all_gather

    check_same_shape(x, info)
    with warnings.catch_warnings():  # torch deprecates it (FutureWarning) on every call; it is still exact
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*all_gather.*")
        parts = all_gather(x.contiguous())
    return torch.cat(parts, dim=0)


def gather_no_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0 (rank order), without gradient (shapes checked)."""
    if not info.enabled:
        return x
    check_same_shape(x, info)
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_tensor_sum(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """A detached copy of `x` summed over ranks (`x` itself is untouched)."""
    out = x.detach().clone()
    if info.enabled:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def local_rows_term(
    partial_sum: Callable[[torch.Tensor, torch.Tensor, slice], torch.Tensor],
    global_phi: torch.Tensor,
    global_psi: torch.Tensor,
    info: DistInfo,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of a global-batch kernel regularizer: ``(term to backpropagate, R)``.

    Args:
        partial_sum: the regularizer's ``partial_sum(global_phi, global_psi, rows)``.
        global_phi: student features of the global batch (B rows, rank order), gathered WITH
            gradient (`gather_with_grad`).
        global_psi: teacher features of the global batch, no gradient.

    Returns:
        ``term = W * local / (2 B^2 R)``: after the gather's backward (which sums every rank's
        contribution into the owner's rows) and averaging over W ranks (DDP for the student, the
        loop's `average_gradients` for the regularizer's own parameters), its gradient is exactly
        the single-process gradient of R. ``R = sqrt(total / B^2 + 1e-8)``, the global value,
        identical on every rank (for logging; detached).
    """
    batch = global_phi.shape[0]
    if batch % info.world_size:
        raise ValueError(f"global batch {batch} does not split over {info.world_size} ranks")
    b = batch // info.world_size
    local = partial_sum(global_phi, global_psi, slice(info.rank * b, (info.rank + 1) * b))
    total = all_reduce_tensor_sum(local, info)
    return rank_surrogate(local, total, batch, info.world_size), distance_from_sum(total, batch)


def average_gradients(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """All-reduce-average the gradients of `params` (the regularizer's own parameters)."""
    if not info.enabled:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(info.world_size)


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few floats over ranks."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's boolean, on every rank."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()

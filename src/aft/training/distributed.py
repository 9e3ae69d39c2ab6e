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

Multi-node (``torchrun --nnodes N``): ``rank`` is the GLOBAL rank (it names shards, decides who
writes run outputs and manifests, who shows progress), ``local_rank`` only picks the GPU of the
node. aft assumes the run folder and the feature store root are on a filesystem every node mounts
at the same path (the usual HPC case); `check_shared_folder` verifies it with one probe file and
`check_same` that every rank sees the same data, each raising the same one-line error on every rank.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import os
import secrets
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def multi_node(self) -> bool:
        """More processes in the job than on this node (``torchrun --nnodes`` > 1)."""
        return self.world_size > self.local_world_size

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _destroy_at_exit() -> None:
    """Destroy the process group `init_from_env` made, if nothing else did (registered with atexit)."""
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):  # best effort at exit: a peer may already be gone
            dist.destroy_process_group()


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group described by torchrun's environment (``WORLD_SIZE`` > 1), if any.

    Uses nccl on CUDA and gloo otherwise. Already-initialized groups are reused. ``rank`` is the
    global rank (``RANK``), ``local_rank`` the rank on this node (``LOCAL_RANK``: the GPU index).
    A collective waits ``AFT_DIST_TIMEOUT_MIN`` minutes (default 30) for the other ranks.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not dist.is_initialized():
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes()))
        # a process that exits with its gloo group alive can abort at interpreter shutdown ("terminate
        # called without an active exception", pytorch/pytorch#190489): destroy it while Python is intact
        atexit.register(_destroy_at_exit)
    world = dist.get_world_size()
    return DistInfo(rank=dist.get_rank(), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                    local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


def timeout_minutes() -> float:
    """Collective timeout: ``$AFT_DIST_TIMEOUT_MIN`` (default 30 minutes)."""
    text = os.environ.get("AFT_DIST_TIMEOUT_MIN", "30")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"AFT_DIST_TIMEOUT_MIN={text!r} is not a positive number of minutes; unset it or fix it")
    return value


def current_info() -> DistInfo:
    """`DistInfo` of an already-initialized process group (or a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    world = dist.get_world_size()
    return DistInfo(rank=dist.get_rank(), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                    local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


class SharedFolderError(ConfigError):
    """A folder that every rank must see (store root, run folder) is not shared by all nodes."""


class RankMismatchError(ConfigError):
    """Ranks of one job disagree about something that must be the same everywhere (their data)."""


def _gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def _nearest_existing(path: Path) -> tuple[Path, int]:
    """The nearest existing folder at or above `path` (absolute) and how many levels up it is."""
    path, up = Path(os.path.abspath(path)), 0
    while not path.is_dir() and path != path.parent:
        path, up = path.parent, up + 1
    return path, up


def check_shared_folder(path: str | Path, info: DistInfo, what: str = "output folder") -> None:
    """Raise `SharedFolderError` on EVERY rank unless every rank sees a file that rank 0 writes at `path`.

    Rank 0 writes a probe file (random name) into `path`, or its nearest existing parent folder
    (nothing is created); every rank looks for it at ITS OWN resolution of `path` (its working
    directory may differ); rank 0 removes it. Single process: no-op.
    """
    if not info.enabled:
        return
    box: list[Any] = [None, 0, None]  # (probe name, levels above `path`, rank 0's error)
    probe: Path | None = None
    if info.is_main:
        folder, up = _nearest_existing(Path(path))
        probe = folder / f".aft-shared-probe-{secrets.token_hex(8)}"
        try:
            probe.write_text(socket.gethostname())
            box = [probe.name, up, None]
        except OSError as exc:
            probe = None
            box = [None, up, f"rank 0 cannot write a probe file in {folder} ({exc.strerror or exc})"]
    dist.broadcast_object_list(box, src=0)
    name, up, problem = box
    mine = Path(os.path.abspath(path))
    for _ in range(int(up)):
        mine = mine.parent
    views = _gather_objects((name is not None and (mine / name).exists(), socket.gethostname(), str(mine)), info)
    if probe is not None:
        probe.unlink(missing_ok=True)
    if problem is None:
        blind = [f"rank {r} (host {host}, in {where})" for r, (ok, host, where) in enumerate(views) if not ok]
        if not blind:
            return
        problem = (f"{', '.join(blind[:4])}{' ...' if len(blind) > 4 else ''} cannot see a file that rank 0 "
                   f"(host {views[0][1]}) wrote in {views[0][2]}")
    raise SharedFolderError(
        f"the {what} {str(path)!r} is not shared by all processes: {problem}; multi-node aft needs it on a "
        "filesystem that every node mounts at the same path (see docs/data-at-scale.md)"
    )


def check_same(value: Any, info: DistInfo, what: str, fix: str) -> None:
    """Raise `RankMismatchError` on EVERY rank unless all ranks pass an equal (picklable) `value`."""
    if not info.enabled:
        return
    views = _gather_objects((value, socket.gethostname()), info)
    odd = [f"rank {r} (host {host})" for r, (v, host) in enumerate(views) if v != views[0][0]]
    if odd:
        raise RankMismatchError(
            f"{', '.join(odd[:4])}{' ...' if len(odd) > 4 else ''} see{'s' if len(odd) == 1 else ''} another "
            f"{what} than rank 0 (host {views[0][1]}); {fix}"
        )


def ids_digest(ids: Any, labels: Any = None) -> str:
    """A short sha256 of sample ids (and labels): what `check_same` compares across ranks."""
    from aft.data.ids import CHUNK, IdArray

    h = hashlib.sha256()
    h.update(str(len(ids)).encode())
    if isinstance(ids, IdArray):  # the same bytes, without decoding
        for s in range(0, len(ids), CHUNK):
            h.update(b"".join(b + b"\0" for b in ids.array[s : s + CHUNK].tolist()))
    else:
        for i in ids:
            h.update(str(i).encode() + b"\0")
    if labels is not None:
        import numpy as np

        h.update(np.ascontiguousarray(np.asarray(labels, dtype=np.int64)).tobytes())
    return h.hexdigest()[:16]


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

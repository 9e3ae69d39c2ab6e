"""Reading batches of a split through a `torch.utils.data.DataLoader` with worker processes.

Extraction and training decide *which* samples form each batch (deterministically, in the main
process); `iter_batches` only reads (decodes, augments, preprocesses) them, in ``workers``
processes, and yields the results in the same order. With ``workers=0`` everything runs in the
calling process, so results never depend on the number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from aft.errors import AftError, ConfigError

#: the most worker processes aft starts by default
MAX_DEFAULT_WORKERS = 4


def default_workers(split: Any) -> int:
    """0 for in-memory inputs (nothing to decode); for lazy inputs one less than the CPUs, 1..4."""
    if not getattr(split, "is_lazy", False):
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_DEFAULT_WORKERS, cpus - 1))


def resolve_workers(workers: int | None, split: Any) -> int:
    """`workers`, or `default_workers(split)` when None; raises `ConfigError` below 0."""
    if workers is None:
        return default_workers(split)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be an integer >= 0 (0 reads in this process), got {workers!r}")
    return workers


class _KeyedReads:
    """A map-style dataset: item k is ``read(keys[k])`` (run inside a worker)."""

    def __init__(self, keys: Sequence[Any], read: Callable[[Any], Any]) -> None:
        self.keys, self.read = keys, read

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, k: int) -> Any:
        try:
            return self.read(self.keys[k])
        except AftError as exc:  # sent back as data: re-raised as the same one-line error in the main process
            return _Failed(type(exc), str(exc))


class _Failed:
    """A user-input error (`AftError`) raised in a worker, carried to the main process."""

    def __init__(self, exc_type: type[AftError], message: str) -> None:
        self.exc_type, self.message = exc_type, message


def _identity(item: Any) -> Any:
    return item


def iter_batches(keys: Sequence[Any], read: Callable[[Any], Any], workers: int = 0, *,
                 pin_memory: bool = False, prefetch: int = 2) -> Iterator[Any]:
    """``read(key)`` for every key, in order; in `workers` DataLoader processes when > 0.

    Args:
        keys: one key per batch (e.g. an index array, or ``(indices, view)``).
        read: reads one batch; must be picklable where processes are spawned (a module-level
            function or a `functools.partial` of one).
        workers: worker processes (0: read here).
        pin_memory: pin tensors returned by `read` (for faster copies to a CUDA device).
        prefetch: batches each worker reads ahead.
    """
    if workers <= 0:
        for key in keys:
            yield read(key)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(_KeyedReads(keys, read), batch_size=None, shuffle=False, num_workers=workers,
                        collate_fn=_identity, pin_memory=pin_memory, prefetch_factor=prefetch,
                        persistent_workers=False)
    it = iter(loader)
    try:
        for item in it:
            if isinstance(item, _Failed):
                raise item.exc_type(item.message)
            yield item
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

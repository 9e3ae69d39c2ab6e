"""Process-wide runtime settings chosen by the CLI: the number of CPU threads torch uses.

torch's default (one intra-op thread per core) is a poor fit for aft's small students on a shared
machine: on a 2-core box under load from other processes, a cnn-small / text-cnn STL step took
35-41 ms with 1 thread and 144-1400 ms with 2 (docs/training.md, "CPU threads"). The CLI entry
points therefore call `configure_threads` once: an explicit ``--threads N`` / config ``threads``
wins, then ``OMP_NUM_THREADS`` (left to torch), then `default_threads`. The library itself
(``aft.train`` from Python) changes nothing unless the config asks (`thread_limit`).

`default_threads(jobs)` is the per-process budget for ``jobs`` processes sharing the machine
(``aft compare --jobs N`` workers, torchrun ranks).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from aft.errors import ConfigError

logger = logging.getLogger(__name__)

#: environment variables through which the user already chose a thread count
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: more intra-op threads than this do not speed up students of this size
MAX_DEFAULT_THREADS = 4


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def default_threads(jobs: int = 1, cpus: int | None = None) -> int:
    """Threads per process for `jobs` processes sharing `cpus` CPUs: half the CPUs per process
    (room for the data pipeline and the rest of the machine), at least 1, at most 4."""
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    cpus = cpu_count() if cpus is None else cpus
    return max(1, min(MAX_DEFAULT_THREADS, cpus // (2 * jobs)))


def _user_env() -> str | None:
    for name in THREAD_ENV_VARS:
        if os.environ.get(name, "").strip():
            return name
    return None


def check_threads(n: int) -> int:
    """`n` if it is a valid thread count, else a one-line `ConfigError`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {n!r}")
    return n


def configure_threads(requested: int | None = None, *, jobs: int | None = None) -> int | None:
    """Set torch's intra-op thread count for this process; returns it (None: left to the environment).

    Args:
        requested: ``--threads`` / config ``threads`` (wins over everything).
        jobs: processes sharing the machine (default: ``LOCAL_WORLD_SIZE`` under torchrun, else 1).
    """
    import torch

    if requested is not None:
        n, why = check_threads(requested), "as requested"
    else:
        env = _user_env()
        if env is not None:
            logger.info("CPU threads: %d (from %s)", torch.get_num_threads(), env)
            return None
        if jobs is None:
            jobs = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        n = default_threads(jobs)
        why = (f"default for {cpu_count()} CPU(s)" + (f" shared by {jobs} processes" if jobs > 1 else "")
               + "; override with --threads N or OMP_NUM_THREADS")
    torch.set_num_threads(n)
    logger.info("CPU threads: %d (%s)", n, why)
    return n


@contextlib.contextmanager
def thread_limit(n: int | None) -> Iterator[None]:
    """Use `n` torch threads inside the block and restore the previous count after (None: no change)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(check_threads(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)

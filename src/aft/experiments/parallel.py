"""`aft compare --jobs N`: grid runs in N worker processes, each with its own thread budget.

The parent plans the grid as chains of phases (`aft.experiments.grid`), submits every run of every
ready phase to a process pool (``spawn`` context, so no forked torch state), and alone appends the
records as runs finish: the records file, the skip-what-is-done resume and the records lock are the
same as with one process. A phase's next phase (finals after selection) is scheduled as soon as its
last run is back; several settings' selection runs (and the folds of one beta) run side by side.

Each worker gets ``max(1, cpus // N)`` intra-op threads (``torch.set_num_threads`` and
``OMP_NUM_THREADS``, set before torch is imported in the worker); on CUDA, worker ``i`` uses device
``i mod device_count``. Teacher features must be extracted by the parent before the workers start;
the workers only open the finished stores read-only.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from aft.errors import ConfigError
from aft.experiments.records import RunRecord

log = logging.getLogger(__name__)

_WORKER: Any = None


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def threads_per_worker(jobs: int, cpus: int | None = None) -> int:
    """The intra-op thread budget of each of `jobs` workers."""
    return max(1, (cpus or cpu_count()) // max(1, jobs))


def resolve_jobs(value: str | int, device: str = "cpu") -> int:
    """``--jobs`` value -> number of workers: an integer >= 1, or ``auto`` (see docs/PERFORMANCE.md:
    one worker per CPU core on CPU, measured fastest on 2 cores; one per GPU on CUDA)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        if device.startswith("cuda"):
            import torch

            return max(1, torch.cuda.device_count())
        return max(1, cpu_count())
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--jobs must be a positive integer or auto, got {value!r}") from None
    if n < 1:
        raise ConfigError(f"--jobs must be a positive integer or auto, got {value!r}")
    return n


def _exit_with_parent(parent: int, every_s: float = 2.0) -> None:
    """End this worker when the comparison that started it is gone (killed: no pool shutdown reaches
    the workers, which would otherwise wait on the pool's queue forever, holding their memory)."""
    while True:
        time.sleep(every_s)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(spec: Any, threads: int, counter: Any) -> None:
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True, name="aft-parent-watch").start()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    global _WORKER
    _WORKER = spec.build(index) if hasattr(spec, "build") else spec


def _run_in_worker(job: Any) -> RunRecord:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(job)


@dataclass
class _ChainState:
    chain: Any
    batch: list[Any]
    got: dict[str, RunRecord] = field(default_factory=dict)


def drive_parallel(
    chains: list[Any],
    executor: Any,
    jobs: int,
    cached: Callable[[Any], RunRecord | None],
    finish: Callable[[Any, RunRecord], RunRecord],
) -> None:
    """Run `chains` (generators of job batches, `aft.experiments.grid.Chain`) on `jobs` workers.

    `cached(job)` returns a finished record or None; `finish(job, record)` appends a new record (it
    runs in this process only). A worker's exception stops the pool and is raised here.
    """
    spec = executor.for_worker() if hasattr(executor, "for_worker") else executor
    threads = threads_per_worker(jobs)
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    states: dict[int, _ChainState] = {}
    queue: deque[tuple[int, Any]] = deque()
    in_flight: dict[Future[RunRecord], str] = {}
    waiting: dict[str, list[tuple[int, Any]]] = {}  # key in flight -> (chain, job) waiting for it

    def advance(cid: int, records: list[RunRecord] | None, front: bool) -> None:
        st = states[cid]
        try:
            batch = next(st.chain) if records is None else st.chain.send(records)
        except StopIteration:
            del states[cid]
            return
        st.batch, st.got = batch, {}
        if not batch:
            advance(cid, [], front)
            return
        items = [(cid, j) for j in batch]
        if front:
            queue.extendleft(reversed(items))
        else:
            queue.extend(items)

    def deliver(cid: int, job: Any, record: RunRecord) -> None:
        st = states[cid]
        st.got[job.key()] = record
        if len(st.got) == len(st.batch):
            advance(cid, [st.got[j.key()] for j in st.batch], front=True)

    for cid, chain in enumerate(chains):
        states[cid] = _ChainState(chain, [])
        advance(cid, None, front=False)

    log.info("running the grid on %d worker processes x %d thread(s)", jobs, threads)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                               initargs=(spec, threads, counter))
    try:
        while queue or in_flight:
            while queue and len(in_flight) < jobs:
                cid, job = queue.popleft()
                key = job.key()
                rec = cached(job)
                if rec is not None:
                    deliver(cid, job, rec)
                    continue
                if key in waiting:  # the same run is already being trained for another chain
                    waiting[key].append((cid, job))
                    continue
                waiting[key] = [(cid, job)]
                in_flight[pool.submit(_run_in_worker, job)] = key
            if not in_flight:
                continue
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for fut in finished:
                key = in_flight.pop(fut)
                holders = waiting.pop(key)
                record = finish(holders[0][1], fut.result())
                for cid, job in holders:
                    deliver(cid, job, record)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)

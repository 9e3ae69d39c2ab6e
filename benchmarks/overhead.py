"""Lock-step AFT vs STL step timing of the real training loop, with its own noise estimate.

Used by ``run_performance.py`` (part ``overhead``). Design (why each piece is there):

* **Same work, same batches.** Every arm is a call of the real loop (``aft.training.train``)
  with the same seed, so the student starts from the same weights and sees the same batches in
  the same order; ``beta_warmup: 0`` (constant beta), so the AFT arm does a steady-state step
  from the first step (the gate of ``beta_warmup: auto`` adds a host read of the task loss per
  step while it is closed).
* **Lock-step interleaving.** The arms run in threads that pass a baton after every optimizer
  step: STL step 1, AFT step 1, (STL again: the A/A control) step 1, then step 2 of each, and so
  on; a step is timed from the moment its thread receives the baton to the loop's ``on_step``
  hook. Only one arm runs at a time, and the two steps of a pair run within a fraction of a
  second of each other, so load from other processes and CPU-frequency drift hit both alike and
  cancel in the per-pair ratio. Setup and the end-of-run evaluation hold the baton too (never
  overlap a timed step) and are not timed. The arm order rotates between runs, so no arm always
  runs first or after the same neighbour.
* **Warm-up in each arm.** One whole lock-step run of every arm is discarded first (the first
  run of a configuration in a process pays one-time costs past any warm-up steps), and then the
  first ``warmup`` steps of every arm of every run are dropped.
* **Threads pinned.** The caller pins torch's intra-/inter-op threads (1 by default, also
  through ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` for subprocesses); with one thread every op
  runs in the timed thread, so its CPU time (``time.thread_time``) is recorded beside the wall
  time: CPU time does not count the time the thread waited for a core.
* **Its own noise.** A second STL arm (A/A) is timed the same way: its ratio to STL must be 1
  within its interval, or the setup is biased. The interval of every ratio is a two-level
  bootstrap (resample runs, then pairs within each run) of the median of per-pair ratios.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

ARM_METHOD = {"stl": "none", "aft": "aft", "stl2": "none"}


class _Baton:
    """Round-robin hand-off between arm threads: exactly one holds the CPU at a time."""

    def __init__(self, arms: list[str]) -> None:
        self.arms = list(arms)
        self.sems = {a: threading.Semaphore(0) for a in arms}
        self.done: set[str] = set()
        self.lock = threading.Lock()

    def wait(self, arm: str) -> None:
        self.sems[arm].acquire()

    def pass_on(self, arm: str, finished: bool = False) -> None:
        with self.lock:
            if finished:
                self.done.add(arm)
            i = self.arms.index(arm)
            for k in range(1, len(self.arms) + 1):
                nxt = self.arms[(i + k) % len(self.arms)]
                if nxt not in self.done:
                    self.sems[nxt].release()
                    return


def lockstep_run(make_config: Callable[[str], Any], run_arm: Callable[[Any, Callable], Any], order: list[str],
                 total_steps: int, sync: Callable[[], None] | None = None) -> dict[str, dict[str, list[float]]]:
    """One run of every arm in `order`, lock-stepped; per arm the wall and thread-CPU seconds of each step.

    `make_config(method)` builds the arm's TrainConfig; `run_arm(cfg, on_step)` runs it. `sync`
    (e.g. ``torch.cuda.synchronize``) is called before every clock read, so a step's queued device
    work counts in its own time.
    """
    sync = sync or (lambda: None)
    baton = _Baton(order)
    out: dict[str, dict[str, list[float]]] = {a: {"wall": [], "cpu": []} for a in order}
    errors: dict[str, BaseException] = {}

    def worker(arm: str) -> None:
        baton.wait(arm)
        start = [time.perf_counter(), time.thread_time()]

        def on_step(step: int, _rec: dict) -> None:
            sync()
            w, c = time.perf_counter(), time.thread_time()
            out[arm]["wall"].append(w - start[0])
            out[arm]["cpu"].append(c - start[1])
            if step < total_steps:  # after the last step keep the baton until train() has returned
                baton.pass_on(arm)
                baton.wait(arm)
                sync()
                start[0], start[1] = time.perf_counter(), time.thread_time()

        try:
            run_arm(make_config(ARM_METHOD[arm]), on_step)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors[arm] = exc
        finally:
            baton.pass_on(arm, finished=True)

    gc.collect()
    threads = [threading.Thread(target=worker, args=(a,), daemon=True) for a in order]
    for t in threads:
        t.start()
    baton.sems[order[0]].release()
    for t in threads:
        t.join()
    if errors:
        arm, exc = next(iter(errors.items()))
        raise RuntimeError(f"arm {arm} failed: {exc!r}") from exc
    return out


def bootstrap_median_ci(per_run: list[np.ndarray], n_boot: int = 2000, level: float = 0.95,
                        seed: int = 0) -> tuple[float, float, float]:
    """Median of the pooled per-pair ratios and its two-level percentile-bootstrap interval.

    Level 1 resamples runs (they may differ as a whole: a run is a fresh process state), level 2
    resamples pairs within each drawn run.
    """
    rng = np.random.default_rng(seed)
    pooled = np.concatenate(per_run)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        runs = rng.integers(0, len(per_run), size=len(per_run))
        draw = [per_run[r][rng.integers(0, len(per_run[r]), size=len(per_run[r]))] for r in runs]
        stats[b] = np.median(np.concatenate(draw))
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(np.median(pooled)), float(lo), float(hi)


def measure(make_config: Callable[[str], Any], run_arm: Callable[[Any, Callable], Any], steps: int, warmup: int,
            runs: int, control: bool = True, sync: Callable[[], None] | None = None) -> dict[str, Any]:
    """`runs` lock-stepped runs of STL, AFT (and the A/A control); ratios with intervals.

    Returns median step times per arm (ms, wall and CPU), per ratio (``aft`` = AFT / STL,
    ``aa`` = STL2 / STL) and clock (``wall``, ``cpu``) the median of per-pair ratios with its 95 %
    bootstrap interval, the per-run medians, and the load average before/after.
    """
    import os

    arms = ["stl", "aft"] + (["stl2"] if control else [])
    load0 = os.getloadavg()
    per_run: dict[str, dict[str, list[np.ndarray]]] = {k: {"wall": [], "cpu": []} for k in ("aft", "aa")}
    step_ms: dict[str, dict[str, list[float]]] = {a: {"wall": [], "cpu": []} for a in arms}
    t0 = time.perf_counter()
    # one discarded run first: the first train() of a configuration in a process pays one-time costs
    # (kernel/primitive selection for its shapes, allocator growth) well past its warm-up steps, and
    # would bias whichever arm runs first (measured: A/A 0.84-0.88 in that run, 0.96-1.03 after it)
    lockstep_run(make_config, run_arm, arms, warmup + 2, sync)
    for r in range(runs):
        k = r % len(arms)
        order = arms[k:] + arms[:k]
        got = lockstep_run(make_config, run_arm, order, warmup + steps, sync)
        for arm in arms:
            for clock in ("wall", "cpu"):
                step_ms[arm][clock] += got[arm][clock][warmup:]
        for key, num in (("aft", "aft"), ("aa", "stl2")):
            if num not in got:
                continue
            for clock in ("wall", "cpu"):
                a = np.asarray(got[num][clock][warmup:])
                b = np.asarray(got["stl"][clock][warmup:])
                per_run[key][clock].append(a / b)
    res: dict[str, Any] = {
        "arms": arms, "runs": runs, "steps_per_run": steps, "warmup_steps": warmup,
        "median_step_ms": {a: {c: round(1000 * float(np.median(v)), 3) for c, v in d.items()} for a, d in step_ms.items()},
        "step_cv": {a: {c: round(float(np.std(v) / np.mean(v)), 4) for c, v in d.items()} for a, d in step_ms.items()},
        "loadavg_1min": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for key, clocks in per_run.items():
        for clock, rr in clocks.items():
            if not rr:
                continue
            med, lo, hi = bootstrap_median_ci(rr)
            res[f"{key}_{clock}"] = {"ratio": round(med, 4), "ci95": [round(lo, 4), round(hi, 4)],
                                     "per_run": [round(float(np.median(x)), 4) for x in rr]}
    return res


def verdict(ratio: float, ci: tuple[float, float], floor: float | None, max_half_width: float = 0.02) -> str:
    """``ok`` or why the measured ratio is a measurement defect, not a result.

    A defect: the ratio is below 1 (AFT does strictly more work than STL), or its whole interval
    lies below the floor, or the interval is wider than +-`max_half_width` (too noisy to quote).
    """
    lo, hi = ci
    if ratio < 1:
        return "defect: below 1"
    if floor is not None and hi < floor:
        return f"defect: below the floor {floor:.4f}"
    if (hi - lo) / 2 > max_half_width:
        return f"defect: too noisy (interval +-{(hi - lo) / 2:.3f})"
    return "ok"


def aa_verdict(ci: tuple[float, float]) -> str:
    """The A/A control (STL vs STL) must contain 1: otherwise position in the order biases the timing."""
    lo, hi = ci
    return "ok" if lo <= 1 <= hi else "biased: A/A interval excludes 1"

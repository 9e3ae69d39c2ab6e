"""The comparison grid: which runs a suite needs, beta selection on validation, and resumable execution.

Protocol (../shared/BENCHMARKS.md): every regularized method tries the same beta grid on the
validation split with `select_seed`; the beta with the best validation accuracy (ties -> the
smaller beta) is then run with every seed and evaluated once on test. STL has no weight to tune;
the linear probe tunes its own regularization on validation. Runs already in the records file are
skipped, so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from aft.experiments.records import RunRecord, append_record, read_records, records_lock, run_key
from aft.experiments.suite import SuiteConfig

log = logging.getLogger(__name__)

PROBE = "probe"
STL = "none"


@dataclass(frozen=True)
class RunJob:
    """Everything that defines one run (what `RunRecord.key` identifies)."""

    suite: str
    dataset: str
    student: str
    teachers: tuple[str, ...]
    method: str
    beta: float
    train_size: int
    seed: int
    phase: str
    views: int = 1
    config: str = ""

    def key(self) -> str:
        return run_key(self)


class RunExecutor(Protocol):
    """Runs one job and returns its record (the training executor, or a fake in tests)."""

    def __call__(self, job: RunJob) -> RunRecord: ...


@dataclass(frozen=True)
class Setting:
    """A (student, teacher set, train size, views) cell and the methods compared in it."""

    student: str
    teachers: tuple[str, ...]
    train_size: int
    views: int
    methods: tuple[str, ...]


def settings(suite: SuiteConfig) -> list[Setting]:
    """The cells of the grid with the methods each one runs (STL and probe are separate)."""
    out: list[Setting] = []
    for views in suite.views:
        for si, student in enumerate(suite.students):
            for ti, teachers in enumerate(suite.teacher_sets):
                methods = [m for m in suite.methods if m != STL]
                if ti > 0:
                    on_ladder = suite.ladder_students is None or student in suite.ladder_students
                    methods = [m for m in methods if m in suite.ladder_methods and on_ladder]
                if views > 1:
                    methods = [m for m in methods if m in suite.view_methods]
                for n in suite.train_sizes:
                    if ti > 0 and suite.ladder_sizes is not None and n not in suite.ladder_sizes:
                        continue
                    cell = list(methods)
                    if si == 0 and ti == 0 and views == 1 and (suite.ablation_sizes is None or n in suite.ablation_sizes):
                        cell += [m for m in suite.ablation_methods if m not in cell]
                    out.append(Setting(student, tuple(teachers), n, views, tuple(cell)))
    return out


@dataclass
class GridProgress:
    """Counts of what `run_grid` did."""

    ran: int = 0
    skipped: int = 0
    records: list[RunRecord] = field(default_factory=list)


def _job(suite: SuiteConfig, s: Setting, method: str, beta: float, seed: int, phase: str, student: str | None = None,
         teachers: tuple[str, ...] | None = None) -> RunJob:
    return RunJob(
        suite=suite.name,
        dataset=suite.dataset,
        student=student or s.student,
        teachers=s.teachers if teachers is None else teachers,
        method=method,
        beta=beta,
        train_size=s.train_size,
        seed=seed,
        phase=phase,
        views=s.views,
        config=suite.settings_hash(),
    )


def select_beta(records: list[RunRecord]) -> float:
    """The beta with the best validation accuracy; ties go to the smaller beta."""
    if not records:
        raise ValueError("no selection records to choose beta from")
    best = max(records, key=lambda r: (r.val_acc, -r.beta))
    return best.beta


def run_grid(
    suite: SuiteConfig,
    records_path: str | Path,
    executor: RunExecutor,
    *,
    progress: bool = True,
    on_record: Callable[[RunRecord], None] | None = None,
) -> GridProgress:
    """Run every job of `suite` that `records_path` does not hold yet, appending one record per run.

    Args:
        suite: the grid.
        records_path: JSON-lines file of records (read to skip finished runs, appended to).
        executor: runs one job.
        progress: show a progress bar over jobs.
        on_record: called with each new record (e.g. to print a line).

    Raises:
        RecordsLockedError: another process is running a grid on the same records file.
    """
    with records_lock(records_path):
        return _run_grid(suite, records_path, executor, progress=progress, on_record=on_record)


def _run_grid(
    suite: SuiteConfig,
    records_path: str | Path,
    executor: RunExecutor,
    *,
    progress: bool,
    on_record: Callable[[RunRecord], None] | None,
) -> GridProgress:
    done = {r.key: r for r in read_records(records_path)}
    result = GridProgress()
    bar = tqdm(total=None, desc=f"compare {suite.name}", unit="run", disable=not progress)

    def run(job: RunJob) -> RunRecord:
        key = job.key()
        if key in done:
            result.skipped += 1
            return done[key]
        bar.set_postfix_str(f"{job.student} {job.method} b={job.beta:g} n={job.train_size} s={job.seed}")
        record = executor(job)
        if record.key != key:
            raise RuntimeError(f"executor returned a record for {record.key!r}, expected {key!r}")
        append_record(records_path, record)
        done[key] = record
        result.ran += 1
        result.records.append(record)
        bar.update(1)
        if on_record is not None:
            on_record(record)
        return record

    for job in _jobs(suite, run):
        run(job)
    bar.close()
    return result


def _jobs(suite: SuiteConfig, run: Callable[[RunJob], RunRecord]) -> Iterator[RunJob]:
    """Yield final jobs in order; selection jobs are run through `run` as they are needed."""
    stl_done: set[tuple[str, int, int]] = set()
    probe_done: set[tuple[tuple[str, ...], int, int]] = set()
    for s in settings(suite):
        if (s.student, s.train_size, s.views) not in stl_done:
            stl_done.add((s.student, s.train_size, s.views))
            for seed in suite.seeds:
                yield _job(suite, s, STL, 0.0, seed, "final", teachers=())
        if suite.probe and s.views == 1 and (s.teachers, s.train_size, 1) not in probe_done:
            probe_done.add((s.teachers, s.train_size, 1))
            for seed in suite.seeds:
                yield _job(suite, s, PROBE, 0.0, seed, "final", student=PROBE)
        for method in s.methods:
            selection = [run(_job(suite, s, method, b, suite.select_seed, "select")) for b in suite.beta_grid]
            beta = select_beta(selection)
            log.info("%s %s n=%d: selected beta=%g", s.student, method, s.train_size, beta)
            for seed in suite.seeds:
                yield _job(suite, s, method, beta, seed, "final")

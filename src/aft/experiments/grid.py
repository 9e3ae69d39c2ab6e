"""The comparison grid: which runs a suite needs, beta selection on training labels, and resumable,
optionally parallel execution.

Protocol (../shared/BENCHMARKS.md): every regularized method tries the same beta grid with
`select_seed`, scored on training labels only (`aft.experiments.selection`): ``selection: cv``
(default) runs every (beta, fold) of a stratified k-fold split and picks beta and the stopping step
by the mean fold accuracy, then the finals train on all training labels for that many steps;
``selection: holdout`` scores each beta on one carved validation split. Ties go to the smaller
beta. The chosen configuration runs with every seed and is evaluated once on test. STL has no
weight, but under cv its stopping step is cross-validated the same way; the linear probe tunes its
own regularization on a validation split. Runs already in the records file are skipped, so an
interrupted comparison continues where it stopped.

Each (setting, method) is a *chain* of phases (selection runs, then finals); with ``jobs > 1`` the
runs of every ready phase are spread over worker processes (`aft.experiments.parallel`) and the
parent alone appends records, so records and resume are the same as with one process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from aft.data.options import dataset_label
from aft.experiments.records import RunRecord, append_record, read_records, records_lock, run_key
from aft.experiments.selection import Choice, choose_cv, choose_holdout, edge_warning
from aft.experiments.suite import SuiteConfig
from aft.training.config import TrainConfig

log = logging.getLogger(__name__)

PROBE = "probe"
STL = "none"
AUTO_SCALE = TrainConfig.beta_auto_scale  # the scale of the `auto` phase's runs (their records' beta)


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
    fold: int | None = None
    steps: int | None = None

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
    choices: dict[str, Choice] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _job(suite: SuiteConfig, s: Setting, method: str, beta: float, seed: int, phase: str, student: str | None = None,
         teachers: tuple[str, ...] | None = None, fold: int | None = None, steps: int | None = None) -> RunJob:
    return RunJob(
        suite=suite.name,
        dataset=dataset_label(suite.dataset, suite.dataset_options),
        student=student or s.student,
        teachers=s.teachers if teachers is None else teachers,
        method=method,
        beta=beta,
        train_size=s.train_size,
        seed=seed,
        phase=phase,
        views=s.views,
        config=suite.settings_hash(s.train_size, phase),
        fold=fold,
        steps=steps,
    )


def select_beta(records: list[RunRecord]) -> float:
    """The beta with the best validation accuracy; ties go to the smaller beta (holdout selection)."""
    return choose_holdout(records).beta


#: a chain yields the jobs of one phase, receives their records (in the same order), yields the next
Chain = Generator[list[RunJob], list[RunRecord], None]


@dataclass
class _Plan:
    """The chains of a suite, plus per-job annotations merged into the records' ``extra``."""

    chains: list[Chain] = field(default_factory=list)
    size: int = 0  # runs of all chains (the progress bar's total)
    annotations: dict[str, dict[str, Any]] = field(default_factory=dict)
    choices: dict[str, Choice] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _fixed_chain(jobs: list[RunJob]) -> Chain:
    yield jobs


def _selectors(suite: SuiteConfig, method: str, train_size: int) -> tuple[list[float], bool, bool]:
    """(beta grid, runs cv folds, runs holdout splits) of a method's selection phase."""
    grid = [0.0] if method == STL else list(suite.beta_grid)
    regret = suite.regret_at(train_size) and method != STL
    want_cv = suite.selection == "cv" or regret
    want_holdout = method != STL and (suite.selection == "holdout" or regret)
    return grid, want_cv, want_holdout


def _method_chain_size(suite: SuiteConfig, method: str, train_size: int) -> int:
    """How many runs `_method_chain` makes (the count does not depend on which beta is chosen)."""
    grid, want_cv, want_holdout = _selectors(suite, method, train_size)
    n = len(grid) * (suite.folds * want_cv + want_holdout) + len(suite.seeds)
    if suite.regret_at(train_size) and method != STL and want_cv:
        n += len(grid) * len(suite.seeds)
    if method in suite.beta_auto:
        n += len(suite.seeds)
    return n


def _method_chain(suite: SuiteConfig, s: Setting, method: str, plan: _Plan) -> Chain:
    """Selection runs of one (setting, method), then its finals (and the regret runs if asked)."""
    grid, want_cv, want_holdout = _selectors(suite, method, s.train_size)
    teachers = () if method == STL else None
    cv_jobs = [_job(suite, s, method, b, suite.select_seed, "cv", teachers=teachers, fold=f)
               for b in grid for f in range(suite.folds)] if want_cv else []
    ho_jobs = [_job(suite, s, method, b, suite.select_seed, "select") for b in grid] if want_holdout else []
    recs = yield cv_jobs + ho_jobs
    cv = choose_cv(recs[: len(cv_jobs)], suite.folds, suite.cv_score) if cv_jobs else None
    ho = choose_holdout(recs[len(cv_jobs):]) if ho_jobs else None
    choice = cv if suite.selection == "cv" else ho
    assert choice is not None
    label = f"{s.student} {method} n={s.train_size}" + (f" [{'+'.join(s.teachers)}]" if method != STL else "") + (
        f" views={s.views}" if s.views > 1 else "")
    plan.choices[label] = choice
    log.info("%s: selected %s", label, choice.summary())
    warn = edge_warning(label, choice) if method != STL else None
    if warn:
        log.warning(warn)
        plan.warnings.append(warn)
    steps = choice.step if choice.mode == "cv" else None
    finals = [_job(suite, s, method, choice.beta, seed, "final", teachers=teachers, steps=steps) for seed in suite.seeds]
    info = {"selection": choice.to_dict()}
    for j in finals:
        plan.annotations[j.key()] = info
    # --beta auto beside the choice (analysis): the default scale (the job's beta), the suite's budget
    finals += [_job(suite, s, method, AUTO_SCALE, seed, "auto") for seed in suite.seeds] if method in suite.beta_auto else []
    regret: list[RunJob] = []
    if suite.regret_at(s.train_size) and method != STL and cv is not None:
        step_of = {sc.beta: sc.step for sc in cv.scores}
        regret = [_job(suite, s, method, b, seed, "regret", steps=step_of[b]) for b in grid for seed in suite.seeds]
        note = {"cv_beta": cv.beta, "holdout_beta": ho.beta if ho is not None else None}
        for j in regret:
            plan.annotations[j.key()] = note
    yield finals + regret


def plan_grid(suite: SuiteConfig) -> _Plan:
    """Every chain of the suite, in the order a single process runs them."""
    plan = _Plan()
    stl_done: set[tuple[str, int, int]] = set()
    probe_done: set[tuple[tuple[str, ...], int, int]] = set()
    for s in settings(suite):
        if (s.student, s.train_size, s.views) not in stl_done:
            stl_done.add((s.student, s.train_size, s.views))
            if suite.selection == "cv":
                plan.chains.append(_method_chain(suite, s, STL, plan))
                plan.size += _method_chain_size(suite, STL, s.train_size)
            else:
                plan.chains.append(_fixed_chain([_job(suite, s, STL, 0.0, seed, "final", teachers=())
                                                 for seed in suite.seeds]))
                plan.size += len(suite.seeds)
        if suite.probe and s.views == 1 and (s.teachers, s.train_size, 1) not in probe_done:
            probe_done.add((s.teachers, s.train_size, 1))
            plan.chains.append(_fixed_chain([_job(suite, s, PROBE, 0.0, seed, "final", student=PROBE)
                                             for seed in suite.seeds]))
            plan.size += len(suite.seeds)
        for method in s.methods:
            plan.chains.append(_method_chain(suite, s, method, plan))
            plan.size += _method_chain_size(suite, method, s.train_size)
    return plan


def run_grid(
    suite: SuiteConfig,
    records_path: str | Path,
    executor: RunExecutor,
    *,
    progress: bool = True,
    on_record: Callable[[RunRecord], None] | None = None,
    jobs: int = 1,
) -> GridProgress:
    """Run every job of `suite` that `records_path` does not hold yet, appending one record per run.

    Args:
        suite: the grid.
        records_path: JSON-lines file of records (read to skip finished runs, appended to).
        executor: runs one job. With ``jobs > 1`` it must be picklable, or offer ``for_worker()``
            returning a picklable spec whose ``build(worker_index)`` makes the worker's executor.
        progress: show a progress bar over jobs.
        on_record: called with each new record (e.g. to print a line).
        jobs: worker processes (1: run in this process).

    Raises:
        RecordsLockedError: another process is running a grid on the same records file.
    """
    with records_lock(records_path):
        return _run_grid(suite, records_path, executor, progress=progress, on_record=on_record, jobs=jobs)


def _run_grid(
    suite: SuiteConfig,
    records_path: str | Path,
    executor: RunExecutor,
    *,
    progress: bool,
    on_record: Callable[[RunRecord], None] | None,
    jobs: int,
) -> GridProgress:
    done = {r.key: r for r in read_records(records_path)}
    result = GridProgress()
    plan = plan_grid(suite)
    # total = the grid's runs; each run found in the records file is taken off it, so the bar counts the
    # runs still to do and its ETA is the mean time of the runs made so far times the runs left
    bar = tqdm(total=plan.size, desc=f"compare {suite.name} ({plan.size} runs)", unit="run", disable=not progress)

    def finish(job: RunJob, record: RunRecord) -> RunRecord:
        key = job.key()
        if record.key != key:
            raise RuntimeError(f"executor returned a record for {record.key!r}, expected {key!r}")
        if key in plan.annotations:
            record.extra = {**record.extra, **plan.annotations[key]}
        append_record(records_path, record)
        done[key] = record
        result.ran += 1
        result.records.append(record)
        bar.update(1)
        if on_record is not None:
            on_record(record)
        return record

    def cached(job: RunJob) -> RunRecord | None:
        rec = done.get(job.key())
        if rec is not None:
            result.skipped += 1
            bar.total = max(bar.n, (bar.total or 0) - 1)
            bar.set_description_str(f"compare {suite.name} ({plan.size} runs, {result.skipped} already done)",
                                    refresh=False)
            bar.refresh()
        return rec

    try:
        if jobs <= 1:
            for chain in plan.chains:
                _drive_inline(chain, executor, cached, finish, bar)
        else:
            from aft.experiments.parallel import drive_parallel

            drive_parallel(plan.chains, executor, jobs, cached, finish)
    finally:
        bar.close()
    result.choices, result.warnings = plan.choices, plan.warnings
    return result


def _drive_inline(chain: Chain, executor: RunExecutor, cached: Callable[[RunJob], RunRecord | None],
                  finish: Callable[[RunJob, RunRecord], RunRecord], bar: Any) -> None:
    """Run one chain phase by phase in this process."""
    try:
        batch = next(chain)
        while True:
            recs = []
            for job in batch:
                rec = cached(job)
                if rec is None:
                    bar.set_postfix_str(f"{job.student} {job.method} b={job.beta:g} n={job.train_size} s={job.seed}"
                                        + (f" fold={job.fold}" if job.fold is not None else ""))
                    rec = finish(job, executor(job))
                recs.append(rec)
            batch = chain.send(recs)
    except StopIteration:
        return

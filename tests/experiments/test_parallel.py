"""`--jobs N`: the grid's runs in worker processes give the same records (keys, choices, accuracies)
as one process; the parent alone appends records; thread budgets and --jobs values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_grid import FakeExecutor, _suite

from aft.errors import ConfigError
from aft.experiments.grid import run_grid
from aft.experiments.parallel import resolve_jobs, threads_per_worker
from aft.experiments.records import read_records


def _by_key(path) -> dict[str, Any]:
    return {r.key: r for r in read_records(path)}


def test_parallel_grid_equals_serial_grid_with_a_fake(tmp_path):
    suite = _suite(selection="cv", folds=2, seeds=[0, 1])
    run_grid(suite, tmp_path / "one.jsonl", FakeExecutor(), progress=False, jobs=1)
    out = run_grid(suite, tmp_path / "two.jsonl", FakeExecutor(), progress=False, jobs=2)
    one, two = _by_key(tmp_path / "one.jsonl"), _by_key(tmp_path / "two.jsonl")
    assert set(one) == set(two) and out.ran == len(two) and len(two) == len(read_records(tmp_path / "two.jsonl"))
    for k, r in one.items():
        assert (r.val_acc, r.test_acc, r.extra) == (two[k].val_acc, two[k].test_acc, two[k].extra)
    again = run_grid(suite, tmp_path / "two.jsonl", FakeExecutor(), progress=False, jobs=2)
    assert again.ran == 0 and again.skipped > 0


class _Boom(FakeExecutor):
    def __call__(self, job):
        if job.method == "kd" and job.phase == "cv":
            raise ConfigError("kd is broken")
        return super().__call__(job)


def test_a_worker_error_reaches_the_parent_and_finished_runs_are_kept(tmp_path):
    with pytest.raises(ConfigError, match="kd is broken"):
        run_grid(_suite(selection="cv", folds=2), tmp_path / "r.jsonl", _Boom(), progress=False, jobs=2)
    assert read_records(tmp_path / "r.jsonl")  # what finished before the error was recorded


def test_jobs_values():
    assert threads_per_worker(2, cpus=2) == 1 and threads_per_worker(1, cpus=2) == 2
    assert threads_per_worker(3, cpus=2) == 1 and threads_per_worker(2, cpus=16) == 8
    assert resolve_jobs("3") == 3 and resolve_jobs("auto") >= 1
    for bad in ("0", "-1", "x"):
        with pytest.raises(ConfigError, match="--jobs"):
            resolve_jobs(bad)


# --------------------------------------------------------------------------- a real tiny suite
_PROJ = np.random.default_rng(7).normal(size=(64, 12)).astype(np.float32) / 8.0


def _tiny_teacher(device: str | None = None, **_: Any):
    from aft.teachers.base import CallableTeacher

    def fn(images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32).reshape(len(images), -1)[:, :64] / 255.0
        return np.tanh(x @ _PROJ)

    return CallableTeacher(fn, dim=12, modality="image", name="tiny-rp", version="1")


@pytest.mark.slow
def test_parallel_compare_equals_serial_on_a_tiny_real_suite(tmp_path):
    from aft.experiments.compare import compare
    from aft.experiments.suite import SuiteConfig
    from aft.teachers.base import TEACHERS, _ensure_builtins

    _ensure_builtins()
    if "tiny-rp" not in TEACHERS:
        TEACHERS.add("tiny-rp", _tiny_teacher)
    suite = SuiteConfig.from_dict(dict(
        name="tiny", dataset="digits", students=["cnn-small"], student_options={"cnn-small": {"width": 4}},
        teacher_sets=[["tiny-rp"]], methods=["none", "aft"], train_sizes=[60], pool_size=60, test_limit=200,
        seeds=[0], beta_grid=[0.1, 1.0], folds=2, probe=False, train={"steps": 24, "batch_size": 16},
    ))
    one = compare(suite, tmp_path / "one.jsonl", tmp_path / "store", progress=False, jobs=1)
    two = compare(suite, tmp_path / "two.jsonl", tmp_path / "store", progress=False, jobs=2)
    a, b = _by_key(one.records_path), _by_key(two.records_path)
    assert set(a) == set(b) and len(a) == 2 * 1 + 1 + 2 * 2 + 1
    chosen = lambda recs: {(r.method, r.beta, r.steps) for r in recs.values() if r.phase == "final"}  # noqa: E731
    assert chosen(a) == chosen(b)
    # every trained run carries the collapse verdict (24 steps at 60 labels: at chance, and flagged so)
    assert all(isinstance(r.extra.get("collapsed"), bool) for r in a.values())
    assert all(("collapse_reason" in r.extra) == r.extra["collapsed"] for r in a.values())
    for k, r in a.items():  # other thread counts may change float rounding, not the outcome
        assert abs(r.val_acc - b[k].val_acc) <= 0.05 or (np.isnan(r.val_acc) and np.isnan(b[k].val_acc))
        if r.test_acc is not None:
            assert abs(r.test_acc - b[k].test_acc) <= 0.05


def test_cli_bad_jobs_is_one_line_before_anything_runs(tmp_path, capsys):
    from aft.cli.main import main

    rc = main(["compare", "demo", "--quick", "--jobs", "zero", "--records", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--jobs must be a positive integer or auto" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())


_ORPHAN_SCRIPT = r'''
import os, sys, time
sys.path.insert(0, sys.argv[2])
from test_grid import FakeExecutor, _suite
from aft.experiments.grid import run_grid

class Slow(FakeExecutor):
    def __call__(self, job):
        with open(os.path.join(sys.argv[1], f"worker-{os.getpid()}"), "w"):
            pass
        time.sleep(0.5)
        return super().__call__(job)

if __name__ == "__main__":  # spawned workers import this file too
    run_grid(_suite(selection="cv", folds=2), os.path.join(sys.argv[1], "r.jsonl"), Slow(), progress=False, jobs=2)
'''


def test_workers_end_when_the_comparison_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "grid.py"
    script.write_text(_ORPHAN_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(Path(__file__).parent)])
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
    assert len(workers) >= 2, "the workers never started"
    proc.send_signal(signal.SIGKILL)  # no shutdown reaches the pool
    proc.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie (exited, not yet reaped by init) counts as gone
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 20
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in workers), "worker processes outlived the killed comparison"

"""The `aft compare` bar knows the grid's total number of runs (so tqdm shows an ETA), and runs found in
the records file are taken off the total."""

from __future__ import annotations

import io

import pytest
from test_grid import FakeExecutor, _suite

from aft.experiments import grid
from aft.experiments.records import read_records


class _Bar:
    """Records what `run_grid` tells its bar; the real tqdm renders it into a buffer."""

    made: list[_Bar] = []

    def __init__(self, total=None, desc="", **kw) -> None:
        from tqdm import tqdm

        self.buf = io.StringIO()
        self.real = tqdm(total=total, desc=desc, file=self.buf, mininterval=0, **{**kw, "disable": False})
        self.first_total = total
        _Bar.made.append(self)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __setattr__(self, name, value):
        if name in ("buf", "real", "first_total"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.real, name, value)


@pytest.mark.parametrize("kw", [dict(selection="holdout"), dict(selection="cv", folds=3),
                                dict(selection="cv", folds=2, regret_analysis=True, probe=True),
                                dict(selection="cv", folds=2, beta_auto=["aft"]),
                                dict(selection="cv", folds=2, regret_analysis=True, regret_sizes=[200])])
def test_bar_total_is_the_number_of_runs(tmp_path, monkeypatch, kw) -> None:
    monkeypatch.setattr(grid, "tqdm", _Bar)
    _Bar.made = []
    suite, ex = _suite(**kw), FakeExecutor()
    grid.run_grid(suite, tmp_path / "r.jsonl", ex, progress=True)
    bar = _Bar.made[-1]
    assert bar.first_total == len(ex.calls) == len(read_records(tmp_path / "r.jsonl"))
    assert f"({len(ex.calls)} runs)" in bar.real.desc
    out = bar.buf.getvalue()
    assert f"{len(ex.calls)}/{len(ex.calls)}" in out and "<" in out  # n/total and tqdm's elapsed<remaining


def test_runs_in_the_records_file_come_off_the_total(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(grid, "tqdm", _Bar)
    path = tmp_path / "r.jsonl"
    suite = _suite(selection="holdout")
    full = FakeExecutor()
    grid.run_grid(suite, path, full, progress=False)
    lines = path.read_text().splitlines()
    keep = len(lines) // 2
    path.write_text("\n".join(lines[:keep]) + "\n")  # an interrupted comparison
    _Bar.made = []
    rest = FakeExecutor()
    grid.run_grid(suite, path, rest, progress=True)
    bar = _Bar.made[-1]
    assert bar.first_total == len(full.calls)
    assert bar.real.total == len(rest.calls) == len(full.calls) - keep  # only the runs still to do
    assert f"{keep} already done" in bar.real.desc

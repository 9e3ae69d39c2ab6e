"""The comparison grid selects beta on validation only, runs finals with every seed, and resumes.

Most of these tests pin the ``holdout`` selector (one validation split per beta), which was the only
protocol before cross-validation became the default; the cv protocol is tested in test_selection.py.
"""

from __future__ import annotations

import math

import pytest

from aft.errors import ConfigError
from aft.experiments.grid import RunJob, run_grid, select_beta, settings
from aft.experiments.records import RunRecord, read_records
from aft.experiments.suite import SuiteConfig


def _suite(**kw) -> SuiteConfig:
    base = dict(
        name="toy",
        dataset="digits",
        students=["cnn-small"],
        teacher_sets=[["t1"], ["t2"], ["t1", "t2"]],
        methods=["none", "kd", "aft"],
        ladder_methods=["aft"],
        ablation_methods=["aft-fixed"],
        train_sizes=[100, 200],
        seeds=[0, 1, 2],
        beta_grid=[0.1, 1.0, 10.0],
        selection="holdout",
    )
    base.update(kw)
    return SuiteConfig.from_dict(base)


class FakeExecutor:
    """Validation accuracy peaks at beta = 1 for aft and 10 for kd (and at step 100 of 150, with a
    little fold-to-fold noise; the validation loss mirrors it); test depends on seed and beta."""

    def __init__(self, best: dict[str, float] | None = None) -> None:
        self.calls: list[RunJob] = []
        self.best = best or {"aft": 1.0, "kd": 10.0, "aft-fixed": 0.1}

    def __call__(self, job: RunJob) -> RunRecord:
        self.calls.append(job)
        best = self.best.get(job.method, 1.0)
        val = 0.9 - 0.01 * abs(math.log10(max(job.beta, 1e-3)) - math.log10(best))
        if job.fold is not None:
            val += 0.001 * ((job.fold * 7) % 3 - 1)
        curve = [{"step": float(s), "val_acc": val - 0.002 * abs(s - 100) / 50, "loss": 1.0} for s in (50, 100, 150)]
        for p in curve:  # the validation loss falls as the accuracy rises: both scores choose alike
            p["val_loss"] = 1.5 - p["val_acc"]
        test = None if job.phase in ("select", "cv") else 0.8 + 0.001 * job.seed - 0.001 * abs(math.log10(
            max(job.beta, 1e-3)))
        return RunRecord(
            suite=job.suite, dataset=job.dataset, student=job.student, teachers=list(job.teachers),
            method=job.method, beta=job.beta, train_size=job.train_size, seed=job.seed, phase=job.phase,
            val_acc=val, test_acc=test, views=job.views, config=job.config, fold=job.fold, steps=job.steps,
            curve=curve if job.phase == "cv" else [],
        )


def test_select_beta_prefers_best_val_then_smaller_beta():
    mk = lambda b, v: RunRecord("s", "d", "st", [], "aft", b, 10, 0, "select", v)  # noqa: E731
    assert select_beta([mk(0.1, 0.5), mk(1.0, 0.7), mk(10.0, 0.6)]) == 1.0
    assert select_beta([mk(10.0, 0.7), mk(1.0, 0.7)]) == 1.0


def test_grid_selects_on_validation_and_runs_each_seed(tmp_path):
    suite, ex = _suite(), FakeExecutor()
    out = run_grid(suite, tmp_path / "r.jsonl", ex, progress=False)
    records = read_records(tmp_path / "r.jsonl")
    assert len(records) == out.ran == len(ex.calls)
    finals = [r for r in records if r.phase == "final"]
    assert all(r.test_acc is not None for r in finals)
    assert all(r.test_acc is None for r in records if r.phase == "select")
    aft_final = {r.beta for r in finals if r.method == "aft"}
    kd_final = {r.beta for r in finals if r.method == "kd"}
    assert aft_final == {1.0} and kd_final == {10.0}
    # every regularized method tries the same grid
    for method in ("aft", "kd", "aft-fixed"):
        betas = sorted({r.beta for r in records if r.method == method and r.phase == "select"})
        assert betas == [0.1, 1.0, 10.0]
    # STL runs once per (student, size), without teachers, for every seed
    stl = [r for r in finals if r.method == "none"]
    assert len(stl) == 2 * 3 and all(r.teachers == [] for r in stl)
    # kd only on the first teacher set (ladder restricts later sets to aft); ablation only on first
    assert {tuple(r.teachers) for r in records if r.method == "kd"} == {("t1",)}
    assert {tuple(r.teachers) for r in records if r.method == "aft"} == {("t1",), ("t2",), ("t1", "t2")}
    assert {tuple(r.teachers) for r in records if r.method == "aft-fixed"} == {("t1",)}
    # probe once per teacher set and size
    assert len([r for r in finals if r.method == "probe"]) == 3 * 2 * 3


def test_grid_resumes_without_rerunning(tmp_path):
    suite = _suite()
    first = FakeExecutor()
    run_grid(suite, tmp_path / "r.jsonl", first, progress=False)
    second = FakeExecutor()
    out = run_grid(suite, tmp_path / "r.jsonl", second, progress=False)
    assert second.calls == [] and out.ran == 0 and out.skipped == len(first.calls)


def test_views_restrict_methods():
    suite = _suite(views=[1, 4], augmentation="image-basic", view_methods=["none", "aft"])
    aug = [s for s in settings(suite) if s.views == 4]
    assert aug and all(set(s.methods) <= {"aft"} for s in aug)


def test_quick_is_small():
    q = _suite().quick()
    assert q.seeds == _suite().seeds[:3] and len(q.train_sizes) == 1 and len(q.beta_grid) == 2 and q.folds <= 3
    # the budget stays the suite's: below it the methods are compared before STL has plateaued
    long = _suite(train={"steps": 600, "batch_size": 8})
    assert long.quick().train == long.train


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"beta_grid": [-1.0]}, "beta_grid"),
        ({"bogus": 1}, "unknown suite keys"),
        ({"views": [4]}, "augmentation"),
        ({"pool_size": 10}, "pool_size"),
    ],
)
def test_bad_suite_configs(bad, match):
    with pytest.raises(ConfigError, match=match):
        _suite(**bad)


def test_ladder_students_and_ablation_sizes_restrict_cells():
    suite = _suite(students=["a", "b"], ladder_students=["b"], ablation_sizes=[100])
    cells = settings(suite)
    later = [c for c in cells if c.teachers != ("t1",)]
    assert all(c.methods == () for c in later if c.student == "a")
    assert all(c.methods == ("aft",) for c in later if c.student == "b")
    abl = [c for c in cells if "aft-fixed" in c.methods]
    assert {(c.student, c.teachers, c.train_size) for c in abl} == {("a", ("t1",), 100)}


def test_changed_training_budget_makes_every_run_new(tmp_path):
    run_grid(_suite(), tmp_path / "r.jsonl", FakeExecutor(), progress=False)
    longer = FakeExecutor()
    out = run_grid(_suite(train={"steps": 999}), tmp_path / "r.jsonl", longer, progress=False)
    assert out.skipped == 0 and out.ran == len(longer.calls) > 0


def test_ladder_sizes_restrict_later_teacher_sets():
    cells = settings(_suite(ladder_sizes=[100]))
    assert {c.train_size for c in cells if c.teachers != ("t1",)} == {100}
    assert {c.train_size for c in cells if c.teachers == ("t1",)} == {100, 200}


def test_train_by_size_overrides_the_budget_of_one_size_and_is_validated():
    s = _suite(train={"steps": 40, "lr": 1e-3}, train_by_size={"200": {"steps": 90}})
    assert s.train_by_size == {200: {"steps": 90}}
    plain = _suite(train={"steps": 40, "lr": 1e-3})
    assert s.settings_hash() != plain.settings_hash()
    # a size's own budget changes only that size's keys: the other sizes' records stay valid
    assert s.settings_hash(100) == plain.settings_hash(100) == plain.settings_hash()
    assert s.settings_hash(200) != plain.settings_hash(200)
    assert s.quick().train_by_size == {}  # quick keeps only the smallest size (100)
    with pytest.raises(ConfigError, match=r"train_by_size has sizes \[300\]"):
        _suite(train_by_size={300: {"steps": 5}})
    with pytest.raises(ConfigError, match="train_by_size maps a train size"):
        _suite(train_by_size={"many": {"steps": 5}})

"""Mean ± SE, seed pairing of the normalized error, STL = 1 exactly, deduplication, select records kept apart."""

from __future__ import annotations

import math
import statistics

import pytest

from aft.experiments.records import RunRecord
from aft.report.aggregate import (
    Group,
    RecordIndex,
    Setting,
    average_of_stats,
    headline,
    mean_se,
    normalized_errors,
)


def test_mean_se_matches_ddof1_and_single_value_has_no_se() -> None:
    vals = [0.7, 0.72, 0.77]
    st = mean_se(vals)
    assert st.mean == pytest.approx(statistics.fmean(vals))
    assert st.se == pytest.approx(statistics.stdev(vals) / math.sqrt(3))
    assert st.n == 3
    one = mean_se([0.5])
    assert one.se is None and one.mean == 0.5


def test_average_of_stats_combines_per_setting_ses() -> None:
    a, b = mean_se([1.0, 2.0]), mean_se([3.0, 5.0])
    avg = average_of_stats([a, b])
    assert avg.mean == pytest.approx((1.5 + 4.0) / 2)
    assert avg.se == pytest.approx(math.sqrt(a.se**2 + b.se**2) / 2)
    assert average_of_stats([a, mean_se([1.0])]).se is None


def test_normalized_error_pairs_by_seed_and_falls_back_to_stl_mean() -> None:
    stl = {0: 0.8, 1: 0.6}  # errors 0.2, 0.4; mean error 0.3
    method = {0: 0.9, 1: 0.8, 2: 0.7}  # errors 0.1, 0.2, 0.3
    st = normalized_errors(method, stl)
    expected = [0.1 / 0.2, 0.2 / 0.4, 0.3 / 0.3]  # seed 2 has no STL run -> STL mean error
    assert st is not None
    assert st.mean == pytest.approx(statistics.fmean(expected))
    assert st.se == pytest.approx(statistics.stdev(expected) / math.sqrt(3))
    assert normalized_errors(method, {}) is None
    assert normalized_errors({0: 0.5}, {0: 1.0}) is None  # STL error 0: undefined, not a crash


def test_stl_normalized_error_is_exactly_one(records: list[RunRecord]) -> None:
    h = headline(RecordIndex.build(records))
    stl_rows = [r for r in h.rows if r.method == "none"]
    assert len(stl_rows) == 1
    assert all(c.mean == 1.0 and c.se == 0.0 for c in stl_rows[0].cells.values())
    assert stl_rows[0].average.mean == 1.0
    assert len(stl_rows[0].cells) == 4  # 2 datasets/students x 2 sizes


def test_select_records_are_kept_out_of_test_results(records: list[RunRecord]) -> None:
    idx = RecordIndex.build(records)
    assert all(r.phase == "final" and r.test_acc is not None for r in idx.final)
    assert idx.select and all(r.phase == "select" for r in idx.select)
    g = Group("vis", "fmnist", "cnn", 100)
    seeds = idx.acc_by_seed(Setting(g, ("t_big",)), "aft")
    assert sorted(seeds) == [0, 1, 2]  # the select runs (seed 0, three betas) are not averaged in
    finals = {r.seed: r.test_acc for r in records
              if r.phase == "final" and r.method == "aft" and r.teachers == ["t_big"] and r.dataset == "fmnist"
              and r.train_size == 100}
    assert seeds == finals


def test_duplicate_run_keeps_the_later_record(records: list[RunRecord]) -> None:
    first = next(r for r in records if r.method == "aft" and r.phase == "final")
    rerun = RunRecord(**{**first.__dict__, "test_acc": 0.999})
    idx = RecordIndex.build([*records, rerun])
    by_seed = idx.acc_by_seed(Setting.of(first), "aft")
    assert by_seed[first.seed] == 0.999
    assert len(idx.records) == len(records)


def test_records_of_a_superseded_configuration_are_left_out_per_size():
    def rec(seed: int, acc: float, config: str, size: int = 500) -> RunRecord:
        return RunRecord("s", "d", "cnn", [], "none", 0.0, size, seed, "final", float("nan"), acc, config=config)

    old = [rec(0, 0.80, "old"), rec(1, 0.82, "old"), rec(0, 0.70, "old", size=100)]
    new = [rec(0, 0.90, "new"), rec(1, 0.94, "new")]
    index = RecordIndex.build(old + new)
    s500 = Setting(Group("s", "d", "cnn", 500, 1))
    # only the later budget's seeds at n=500; n=100 (never re-run) keeps its records
    assert index.acc_by_seed(s500, "none") == {0: 0.90, 1: 0.94}
    assert index.acc_by_seed(Setting(Group("s", "d", "cnn", 100, 1)), "none") == {0: 0.70}
    (note,) = [n for n in index.notes if "earlier configuration" in n]
    assert "2 record(s) of suite s at n=500" in note and "superseded by new" in note


def test_finals_of_an_earlier_choice_are_left_out() -> None:
    from aft.report.aggregate import RecordIndex, Setting

    def rec(**kw):
        base = dict(suite="s", dataset="d", student="st", teachers=["t"], method="aft", train_size=100, seed=0,
                    val_acc=0.5, views=1, config="c")
        base.update(kw)
        return RunRecord(**base)

    # fold records scored by loss: beta 10 has the lower loss at its step 100 (accuracies tie)
    folds = [rec(phase="cv", beta=b, fold=f, extra={"cv_score": "loss"},
                 curve=[{"step": 100.0, "val_acc": 0.8, "val_loss": 0.9 if b == 0.1 else 0.6}])
             for b in (0.1, 10.0) for f in range(2)]
    old = [rec(phase="final", beta=0.1, steps=100, seed=s, test_acc=0.70) for s in range(2)]  # accuracy's choice
    new = [rec(phase="final", beta=10.0, steps=100, seed=s, test_acc=0.80) for s in range(2)]
    stl = [rec(phase="final", method="none", teachers=[], beta=0.0, seed=s, test_acc=0.6) for s in range(2)]
    idx = RecordIndex.build([*folds, *old, *new, *stl])
    setting = Setting.of(new[0])
    assert idx.acc(setting, "aft").mean == pytest.approx(0.80)  # not the 0.75 of both choices averaged
    assert {r.beta for r in idx.final if r.method == "aft"} == {10.0}
    assert idx.acc(Setting.of(stl[0]), "none").mean == pytest.approx(0.6)  # no fold records: untouched
    assert any("2 final record(s) of aft" in n and "beta=10, 100 steps" in n for n in idx.notes)

"""Cross-validated selection: stratified seeded folds, the (beta, step) choice by mean fold accuracy,
the cv protocol of the grid (finals on all labels with the chosen steps), edge warnings, regret runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_grid import FakeExecutor, _suite

from aft.data.split import DatasetSplit
from aft.errors import ConfigError, DataError
from aft.experiments.grid import run_grid
from aft.experiments.records import RunRecord, read_records
from aft.experiments.selection import (
    choose,
    choose_cv,
    edge_warning,
    fold_split,
    parse_beta_grid,
    stratified_folds,
)


def test_folds_are_stratified_seeded_and_partition_the_samples():
    y = np.repeat(np.arange(4), [13, 7, 10, 5])
    f = stratified_folds(y, 5, seed=3)
    assert f.shape == y.shape and set(f) == set(range(5))
    sizes = np.bincount(f, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for c in range(4):  # each class spread as evenly as possible
        per = np.bincount(f[y == c], minlength=5)
        assert per.max() - per.min() <= 1
    assert np.array_equal(f, stratified_folds(y, 5, seed=3))
    assert not np.array_equal(f, stratified_folds(y, 5, seed=4))


def test_fold_split_holds_out_exactly_fold_f():
    y = np.repeat(np.arange(3), 10)
    split = DatasetSplit(inputs=np.zeros((30, 2), dtype=np.float32), labels=y, ids=[f"s{i}" for i in range(30)],
                         class_names=["a", "b", "c"], dataset="toy", split="train", modality="tabular")
    held = []
    for f in range(3):
        tr, val = fold_split(split, 3, f, seed=0)
        assert set(tr.ids).isdisjoint(val.ids) and len(tr) + len(val) == 30
        per_class = np.bincount(val.labels, minlength=3)
        assert per_class.max() - per_class.min() <= 1
        held += list(val.ids)
    assert sorted(held) == sorted(split.ids)


def test_too_few_labels_for_the_folds_is_one_line():
    with pytest.raises(DataError, match="cannot be split into 5 folds"):
        stratified_folds([0, 1, 0], 5, 0)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        stratified_folds([0, 1, 0], 1, 0)


def _cv(beta, fold, curve, losses=None, score=None):
    points = [{"step": float(k), "val_acc": v} for k, v in curve.items()]
    for p in points:
        if losses is not None:
            p["val_loss"] = losses[int(p["step"])]
    return RunRecord("s", "d", "st", ["t"], "aft", beta, 50, 0, "cv", max(curve.values()), curve=points, fold=fold,
                     extra={} if score is None else {"cv_score": score})


def test_cv_by_loss_compares_the_betas_by_mean_fold_cross_entropy_at_their_stopping_steps():
    # accuracies tie (0.85 at the last step for both betas); beta 10's folds are less wrong in loss
    acc = {50: 0.80, 100: 0.85}
    loss = {0.1: [{50: 0.90, 100: 0.84}, {50: 0.88, 100: 0.80}], 10.0: [{50: 0.80, 100: 0.62}, {50: 0.70, 100: 0.66}]}
    recs = [_cv(b, f, acc, loss[b][f], score="loss") for b in (0.1, 10.0) for f in range(2)]
    by_loss = choose_cv(recs, folds=2)  # the score the records were made for
    assert by_loss.score == "loss" and by_loss.beta == 10.0 and by_loss.step == 100
    sc = {s.beta: s for s in by_loss.scores}
    assert sc[10.0].loss == pytest.approx((0.62 + 0.66) / 2) and sc[0.1].loss == pytest.approx((0.84 + 0.80) / 2)
    by_acc = choose_cv(recs, folds=2, score="accuracy")
    assert by_acc.score == "accuracy" and by_acc.beta == 0.1  # the tie goes to the smaller beta
    assert "val loss 0.640" in by_loss.summary()
    # the loss is read at each beta's stopping step, not at its own minimum: beta 0.1's loss is lowest
    # at step 50, but its accuracy stops it at 100, where beta 10 is better
    loss[0.1] = [{50: 0.30, 100: 0.84}, {50: 0.30, 100: 0.80}]
    recs = [_cv(b, f, acc, loss[b][f], score="loss") for b in (0.1, 10.0) for f in range(2)]
    assert choose_cv(recs, folds=2).beta == 10.0


def test_cv_by_loss_refuses_records_without_it_and_old_records_score_by_accuracy():
    old = [_cv(b, f, {5: v}) for b, v in ((0.1, 0.6), (1.0, 0.5)) for f in range(2)]
    assert choose_cv(old).score == "accuracy" and choose_cv(old).beta == 0.1
    with pytest.raises(DataError, match="no validation loss in their curves.*cv_score: accuracy"):
        choose_cv(old, score="loss")
    with pytest.raises(ConfigError, match="unknown cv score 'auc'; choose one of loss, accuracy"):
        choose_cv(old, score="auc")


def test_choose_cv_uses_the_mean_over_folds_at_each_step():
    # beta 1: fold 0 peaks at step 10, fold 1 at step 20; mean is best at 20
    recs = [
        _cv(1.0, 0, {10: 0.80, 20: 0.78}), _cv(1.0, 1, {10: 0.60, 20: 0.70}),
        _cv(10.0, 0, {10: 0.72, 20: 0.70}), _cv(10.0, 1, {10: 0.72, 20: 0.70}),
    ]
    c = choose_cv(recs, folds=2)
    means = {b: {s: np.mean([r_c[s] for r_c in cs]) for s in (10, 20)} for b, cs in {
        1.0: [{10: 0.80, 20: 0.78}, {10: 0.60, 20: 0.70}], 10.0: [{10: 0.72, 20: 0.70}] * 2}.items()}
    best = max(((m, -b, s, b) for b, d in means.items() for s, m in d.items()))
    assert (c.beta, c.step) == (best[3], best[2]) == (1.0, 20)
    assert c.mean == pytest.approx(0.74)
    assert c.se == pytest.approx(np.std([0.78, 0.70], ddof=1) / math.sqrt(2))
    assert [s.beta for s in c.scores] == [1.0, 10.0] and c.scores[1].step == 10


def test_cv_stopping_step_is_the_latest_within_one_standard_error_of_the_best():
    folds = [{25: 0.40, 50: 0.62, 75: 0.55, 100: 0.58, 150: 0.50},
             {25: 0.42, 50: 0.58, 75: 0.57, 100: 0.56, 150: 0.52},
             {25: 0.38, 50: 0.60, 75: 0.59, 100: 0.57, 150: 0.48}]
    c = choose_cv([_cv(1.0, f, d) for f, d in enumerate(folds)], folds=3)
    # independent computation: best mean at 50 (0.60, se = std([.62, .58, .60]) / sqrt 3 = 0.01155);
    # steps whose mean is >= 0.60 - se: 50 (0.60), 75 (0.5700 no), 100 (0.5700 no) -> a wider band below
    mean = {s: np.mean([d[s] for d in folds]) for s in folds[0]}
    se = np.std([d[50] for d in folds], ddof=1) / math.sqrt(3)
    assert c.step == max(s for s in mean if mean[s] >= mean[50] - se - 1e-12) == 50
    assert c.mean == pytest.approx(0.60) and c.se == pytest.approx(se)
    # noisier folds: the band reaches step 100, which is chosen although 50 has the best mean
    folds[0][50], folds[1][50] = 0.70, 0.50
    c = choose_cv([_cv(1.0, f, d) for f, d in enumerate(folds)], folds=3)
    se = np.std([d[50] for d in folds], ddof=1) / math.sqrt(3)
    mean = {s: np.mean([d[s] for d in folds]) for s in folds[0]}
    assert max(mean, key=mean.get) == 50 and mean[100] >= mean[50] - se and mean[150] < mean[50] - se
    assert c.step == 100 and c.mean == pytest.approx(mean[50])
    assert c.scores[0].folds == [d[50] for d in folds]


def test_choose_cv_ties_go_to_the_smaller_beta_and_missing_folds_are_refused():
    recs = [_cv(b, f, {5: 0.5}) for b in (3.0, 0.3) for f in range(2)]
    assert choose("cv", recs).beta == 0.3
    with pytest.raises(DataError, match="expected 0..2"):
        choose_cv(recs, folds=3)
    with pytest.raises(ConfigError, match="unknown selection"):
        choose("bogus", recs)


def test_edge_warning_only_at_the_ends_of_a_grid_of_three():
    inner = choose_cv([_cv(b, 0, {1: v}) for b, v in ((0.1, 0.5), (1.0, 0.7), (10.0, 0.6))])
    top = choose_cv([_cv(b, 0, {1: v}) for b, v in ((0.1, 0.5), (1.0, 0.6), (10.0, 0.7))])
    assert edge_warning("x", inner) is None
    assert "largest of the grid" in (edge_warning("x", top) or "")
    two = choose_cv([_cv(b, 0, {1: v}) for b, v in ((1.0, 0.5), (10.0, 0.7))])
    assert edge_warning("x", two) is None


def test_cv_grid_protocol(tmp_path):
    suite = _suite(selection="cv", folds=3, teacher_sets=[["t1"]], ablation_methods=[], train_sizes=[100])
    ex = FakeExecutor()
    out = run_grid(suite, tmp_path / "r.jsonl", ex, progress=False)
    recs = read_records(tmp_path / "r.jsonl")
    assert not [r for r in recs if r.phase == "select"]
    cv = [r for r in recs if r.phase == "cv"]
    # every method incl. STL: every beta x every fold, with the selection seed, never on test
    for method, grid in (("none", [0.0]), ("kd", [0.1, 1.0, 10.0]), ("aft", [0.1, 1.0, 10.0])):
        got = sorted((r.beta, r.fold) for r in cv if r.method == method)
        assert got == sorted((b, f) for b in grid for f in range(3))
    assert all(r.test_acc is None and r.seed == suite.select_seed for r in cv)
    finals = {(r.method, r.seed): r for r in recs if r.phase == "final" and r.method != "probe"}
    assert {m for m, _ in finals} == {"none", "kd", "aft"} and {s for _, s in finals} == {0, 1, 2}
    assert {finals[("aft", s)].beta for s in range(3)} == {1.0} and finals[("kd", 0)].beta == 10.0
    assert all(r.steps == 100 for r in finals.values())  # the step with the best mean fold accuracy
    sel = finals[("aft", 0)].extra["selection"]
    assert sel["mode"] == "cv" and sel["beta"] == 1.0 and sel["step"] == 100
    assert len(sel["scores"]) == 3 and all(len(s["folds"]) == 3 for s in sel["scores"])
    assert sel["se"] > 0
    # kd's choice is the largest beta of the grid: warned
    assert any("kd" in w and "largest" in w for w in out.warnings)
    # resume: nothing reruns
    again = FakeExecutor()
    assert run_grid(suite, tmp_path / "r.jsonl", again, progress=False).ran == 0 and again.calls == []


def test_scoring_by_loss_reruns_the_fold_runs_only(tmp_path):
    p = tmp_path / "r.jsonl"
    base = dict(selection="cv", folds=2, teacher_sets=[["t1"]], ablation_methods=[], train_sizes=[100], seeds=[0])
    first = FakeExecutor()
    run_grid(_suite(cv_score="accuracy", **base), p, first, progress=False)
    again = FakeExecutor()
    out = run_grid(_suite(**base), p, again, progress=False)  # the default: loss
    # the fake's loss mirrors its accuracy, so the choices agree: only the fold runs are new
    assert again.calls and {j.phase for j in again.calls} == {"cv"}
    assert out.ran == len([j for j in first.calls if j.phase == "cv"])
    recs = read_records(p)
    cv_cfgs = {r.config for r in recs if r.phase == "cv"}
    final_cfgs = {r.config for r in recs if r.phase == "final"}
    assert len(cv_cfgs) == 2 and len(final_cfgs) == 1 and final_cfgs < cv_cfgs
    from aft.report.aggregate import drop_superseded

    kept, notes = drop_superseded(recs)  # the accuracy-era fold records are superseded, the finals kept
    assert {r.phase for r in kept} >= {"cv", "final"}
    assert len({r.config for r in kept if r.phase == "cv"}) == 1
    assert len([r for r in kept if r.phase == "final"]) == len([r for r in recs if r.phase == "final"])
    assert len(notes) == 1 and "fold record(s)" in notes[0]
    with pytest.raises(ConfigError, match="cv_score must be one of loss, accuracy"):
        _suite(cv_score="f1", **base)


def test_cv_and_holdout_records_have_distinct_keys(tmp_path):
    p = tmp_path / "r.jsonl"
    run_grid(_suite(selection="holdout"), p, FakeExecutor(), progress=False)
    ex = FakeExecutor()
    out = run_grid(_suite(selection="cv", folds=2), p, ex, progress=False)
    assert out.skipped == 0 and out.ran == len(ex.calls)
    cfgs = {r.phase: r.config for r in read_records(p) if r.phase in ("select", "cv")}
    assert cfgs["select"] != cfgs["cv"]


def test_regret_analysis_runs_every_beta_on_test_but_does_not_change_the_choice(tmp_path):
    base = dict(selection="cv", folds=2, teacher_sets=[["t1"]], ablation_methods=[], train_sizes=[100],
                seeds=[0, 1])
    plain = run_grid(_suite(**base), tmp_path / "a.jsonl", FakeExecutor(), progress=False)
    run_grid(_suite(**base, regret_analysis=True), tmp_path / "b.jsonl", FakeExecutor(), progress=False)
    recs = read_records(tmp_path / "b.jsonl")
    regret = [r for r in recs if r.phase == "regret"]
    assert sorted((r.method, r.beta, r.seed) for r in regret) == sorted(
        (m, b, s) for m in ("kd", "aft") for b in (0.1, 1.0, 10.0) for s in (0, 1))
    assert all(r.test_acc is not None and r.steps == 100 for r in regret)
    assert {r.method for r in recs if r.phase == "select"} == {"kd", "aft"}  # the holdout choice, for comparison
    finals_a = {(r.method, r.beta) for r in read_records(tmp_path / "a.jsonl") if r.phase == "final"}
    finals_b = {(r.method, r.beta) for r in recs if r.phase == "final"}
    assert finals_a == finals_b and plain.ran > 0
    two = dict(base, train_sizes=[20, 100])
    only = run_grid(_suite(**two, regret_analysis=True, regret_sizes=[100]), tmp_path / "c.jsonl", FakeExecutor(),
                    progress=False)
    assert {r.train_size for r in only.records if r.phase in ("regret", "select")} == {100}
    with pytest.raises(ConfigError, match="regret_sizes"):
        _suite(**two, regret_analysis=True, regret_sizes=[50])


def test_suite_selection_keys_are_validated():
    with pytest.raises(ConfigError, match="selection must be cv or holdout"):
        _suite(selection="loo")
    with pytest.raises(ConfigError, match="folds must be an integer"):
        _suite(selection="cv", folds=1)
    with pytest.raises(ConfigError, match="need at least 500 labels"):
        _suite(selection="cv", folds=500)
    q = _suite(selection="cv", folds=5).quick()
    assert q.folds == 3 and q.selection == "cv"


def test_parse_beta_grid():
    assert parse_beta_grid("10,0.1, 1") == [0.1, 1.0, 10.0]
    for bad in ("", "a,b", "1,nan", "-1"):
        with pytest.raises(ConfigError, match="--beta-grid"):
            parse_beta_grid(bad)


def test_beta_auto_runs_every_seed_beside_the_choice_and_is_reported(tmp_path):
    from aft.report import RecordIndex
    from aft.report.beta_auto import beta_auto_table

    base = dict(selection="cv", folds=2, teacher_sets=[["t1"]], ablation_methods=[], train_sizes=[100], seeds=[0, 1])
    ex = FakeExecutor()
    run_grid(_suite(**base, beta_auto=["aft"]), tmp_path / "r.jsonl", ex, progress=False)
    recs = read_records(tmp_path / "r.jsonl")
    auto = [r for r in recs if r.phase == "auto"]
    # one run per seed, the default scale (3) as the record's beta, the suite's budget (no chosen step), for the listed method only
    assert sorted((r.method, r.beta, r.seed, r.steps) for r in auto) == [("aft", 3.0, 0, None), ("aft", 3.0, 1, None)]
    assert all("selection" not in r.extra for r in auto)  # not a selected configuration
    plain = run_grid(_suite(**base), tmp_path / "p.jsonl", FakeExecutor(), progress=False)
    assert len(ex.calls) == plain.ran + 2  # nothing else changes
    table = beta_auto_table(RecordIndex.build(recs))
    (row,) = table.rows
    cv_final = [r.test_acc for r in recs if r.phase == "final" and r.method == "aft"]
    auto_acc = [r.test_acc for r in auto]
    # independent: the difference of the means, in points
    assert row[table.header.index("Δ")].startswith(f"{100 * (np.mean(auto_acc) - np.mean(cv_final)):+.2f}")
    with pytest.raises(ConfigError, match="beta_auto"):
        _suite(**base, beta_auto=["none"])
    with pytest.raises(ConfigError, match="beta_auto"):
        _suite(**base, beta_auto=["rkd"])


def test_compare_analysis_flags_switch_on_the_analysis_runs_without_changing_the_keys():
    from aft.cli.commands.compare import with_analyses
    from aft.experiments.grid import plan_grid

    suite = _suite(selection="cv", folds=2, teacher_sets=[["t1"]], ablation_methods=[], train_sizes=[100])
    both = with_analyses(suite, ["regret", "beta-auto"])
    assert both.regret_analysis and both.beta_auto == ["aft"] and not suite.regret_analysis
    assert both.settings_hash() == suite.settings_hash()  # earlier records stay valid
    assert plan_grid(both).size > plan_grid(suite).size
    with pytest.raises(ConfigError, match="--analysis beta-auto runs the suite's method aft"):
        with_analyses(_suite(methods=["none", "kd"], ablation_methods=[], ladder_methods=[]), ["beta-auto"])

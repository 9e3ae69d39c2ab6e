"""The report's selection view: cv beta curves with fold error bars, the selected-beta table with an
edge warning, and the CV-vs-holdout regret table computed from regret-phase records."""

from __future__ import annotations

import numpy as np

from aft.experiments.records import RunRecord
from aft.report import build_report
from aft.report.aggregate import RecordIndex
from aft.report.selection import regret_table, selection_table

BETAS = (0.1, 1.0, 10.0)
# fold val accuracy per beta (3 folds) at step 100; aft peaks at the grid's largest beta
FOLD_VAL = {0.1: (0.60, 0.62, 0.61), 1.0: (0.65, 0.66, 0.64), 10.0: (0.70, 0.69, 0.71)}
HOLDOUT_VAL = {0.1: 0.70, 1.0: 0.60, 10.0: 0.65}  # holdout (one split) prefers 0.1
TEST = {0.1: (0.55, 0.57), 1.0: (0.66, 0.64), 10.0: (0.62, 0.63)}  # in hindsight 1.0 is best


def _r(**kw) -> RunRecord:
    base = dict(suite="s", dataset="fm", student="cnn", teachers=["t"], method="aft", train_size=100, seed=0,
                val_acc=0.5, views=1)
    base.update(kw)
    return RunRecord(**base)


def _records() -> list[RunRecord]:
    out = []
    for b, vals in FOLD_VAL.items():
        for f, v in enumerate(vals):
            out.append(_r(beta=b, phase="cv", fold=f, val_acc=v,
                          curve=[{"step": 50.0, "val_acc": v - 0.1}, {"step": 100.0, "val_acc": v}]))
        out.append(_r(beta=b, phase="select", val_acc=HOLDOUT_VAL[b]))
        for seed, acc in enumerate(TEST[b]):
            out.append(_r(beta=b, phase="regret", seed=seed, test_acc=acc, steps=100))
    for f in range(3):
        out.append(_r(method="none", teachers=[], beta=0.0, phase="cv", fold=f, val_acc=0.58,
                      curve=[{"step": 100.0, "val_acc": 0.58}]))
    for seed in (0, 1):
        out.append(_r(beta=10.0, phase="final", seed=seed, test_acc=TEST[10.0][seed], steps=100,
                      val_acc=float("nan")))
        out.append(_r(method="none", teachers=[], phase="final", beta=0.0, seed=seed, test_acc=0.5, steps=100,
                      val_acc=float("nan")))
    return out


def test_selection_table_reports_fold_mean_se_and_edge():
    t = selection_table(RecordIndex.build(_records()))
    rows = {(r[3], r[5]): r for r in t.rows}
    cv = rows[("aft", "cv (accuracy)")]  # these fold records carry no loss: scored by accuracy
    mean, se = np.mean(FOLD_VAL[10.0]), np.std(FOLD_VAL[10.0], ddof=1) / np.sqrt(3)
    assert cv[6] == "10" and cv[7] == "100" and cv[8] == f"{100 * mean:.1f} ± {100 * se:.1f}" and cv[9] == "—"
    assert cv[11].startswith("⚠")
    assert rows[("aft", "holdout")][6] == "0.1" and rows[("aft", "holdout")][11].startswith("⚠")
    assert rows[("none", "cv")][6] == "—" and rows[("none", "cv")][11] == ""


def test_regret_table_against_hindsight():
    t = regret_table(RecordIndex.build(_records()))
    assert len(t.rows) == 1
    row = t.rows[0]
    best = max(TEST, key=lambda b: np.mean(TEST[b]))
    assert best == 1.0 and row[6] == "1"
    cv_regret = 100 * (np.mean(TEST[10.0]) - np.mean(TEST[1.0]))
    ho_regret = 100 * (np.mean(TEST[0.1]) - np.mean(TEST[1.0]))
    assert row[8] == "10" and float(row[9]) == round(cv_regret, 2)
    assert row[10] == "0.1" and float(row[11]) == round(ho_regret, 2)


def test_report_has_beta_curves_selection_regret_and_edge_warning(tmp_path, caplog):
    paths = build_report(_records(), tmp_path / "rep", markdown_path=tmp_path / "RESULTS.md")
    md = (tmp_path / "RESULTS.md").read_text()
    assert "Selected β and stopping step" in md and "Selection regret: CV vs holdout" in md
    assert "warning: cv aft" in md and "largest of the grid" in md
    assert "largest of the grid" in caplog.text
    assert any(p.name.startswith("beta_") for p in paths.plots)
    assert not [n for n in paths.notes if "unknown phase" in n]  # cv and regret records are understood


def test_no_regret_table_without_regret_records(tmp_path):
    recs = [r for r in _records() if r.phase != "regret"]
    build_report(recs, tmp_path / "rep", markdown_path=tmp_path / "RESULTS.md")
    assert "Selection regret" not in (tmp_path / "RESULTS.md").read_text()


def test_one_se_rule_picks_the_largest_beta_within_one_se_of_the_best():
    from aft.experiments.selection import BetaScore, Choice
    from aft.report.selection import one_se_beta

    scores = [BetaScore(0.1, 0.85, 0.035, 300), BetaScore(1.0, 0.85, 0.027, 300), BetaScore(10.0, 0.84, 0.037, 300)]
    # best mean 0.85 (the first maximum, SE 0.035): 0.84 >= 0.815, so the strongest prior wins
    assert one_se_beta(Choice("cv", 0.1, 300, 0.85, 0.035, scores)) == 10.0
    far = [BetaScore(0.1, 0.534, 0.027, 300), BetaScore(1.0, 0.54, 0.018, 300), BetaScore(10.0, 0.416, 0.018, 300)]
    assert one_se_beta(Choice("cv", 1.0, 300, 0.54, 0.018, far)) == 1.0
    assert one_se_beta(None) is None
    row = regret_table(RecordIndex.build(_records())).rows[0]
    # the fixture's folds: 10 is best and nothing else is within one SE, so the rule agrees with CV
    assert row[12] == "10" and row[13] == row[9]


def test_selection_table_names_the_loss_score_and_its_value():
    # fold records made for cv_score loss: beta 0.1 has the lower loss although beta 10 has the better accuracy
    loss = {0.1: 0.50, 1.0: 0.70, 10.0: 0.90}
    recs = [_r(beta=b, phase="cv", fold=f, val_acc=v, extra={"cv_score": "loss"},
               curve=[{"step": 100.0, "val_acc": v, "val_loss": loss[b] + f / 100}])
            for b, vals in FOLD_VAL.items() for f, v in enumerate(vals)]
    rows = {r[5]: r for r in selection_table(RecordIndex.build(recs)).rows}
    row = rows["cv (loss)"]
    assert row[6] == "0.1" and row[9] == f"{np.mean([0.50, 0.51, 0.52]):.3f}"

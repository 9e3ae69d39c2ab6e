"""Learning-curve bands over seeds, sorted-rho bands, per-class accuracy from the confusion matrices,
and the run list (collapsed flag, links to the run's configuration and saved student)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from _report_fixtures import make_records

from aft.experiments.records import RunRecord
from aft.report import build_report
from aft.report.aggregate import Group, RecordIndex, Setting
from aft.report.run_plots import class_results, curve_bands, rho_bands

G = Group("vis", "fmnist", "cnn", 100)


def _finals(records, **match):
    return [r for r in records if r.phase == "final" and all(getattr(r, k) == v for k, v in match.items())]


def test_curve_band_is_mean_and_se_over_seeds(records: list[RunRecord]) -> None:
    bands = curve_bands(RecordIndex.build(records))
    recs = _finals(records, method="aft", dataset="fmnist", train_size=100, teachers=["t_big"])
    for metric, scale in (("task_loss", 1.0), ("val_acc", 100.0)):
        b, source = bands[(Setting(G, ("t_big",)), "aft")][metric]
        i = b.x.index(200.0)
        vals = np.array([next(p[metric] for p in r.curve if p["step"] == 200.0) * scale for r in recs])
        assert b.mean[i] == pytest.approx(vals.mean())
        assert b.se[i] == pytest.approx(vals.std(ddof=1) / np.sqrt(len(vals)))
        assert b.n[i] == 3 and source == "3 seed(s)"
    assert "reg_loss" not in bands[(Setting(G, ()), "none")]  # STL has no regularizer: no flat zero line
    assert "reg_loss" in bands[(Setting(G, ("t_big",)), "aft")]


def test_cv_finals_take_validation_curves_from_the_chosen_betas_folds() -> None:
    def rec(**kw):
        base = dict(suite="s", dataset="d", student="st", teachers=["t"], method="aft", train_size=50, seed=0,
                    val_acc=0.5)
        return RunRecord(**{**base, **kw})

    finals = [rec(beta=1.0, phase="final", seed=s, test_acc=0.7, steps=10, curve=[{"step": 10.0, "task_loss": 1.0 + s}])
              for s in (0, 1)]
    folds = [rec(beta=b, phase="cv", fold=f, curve=[{"step": 10.0, "val_acc": v + f / 10}])
             for b, v in ((1.0, 0.6), (10.0, 0.1)) for f in range(3)]
    bands = curve_bands(RecordIndex.build(finals + folds))[(Setting.of(finals[0]), "aft")]
    b, source = bands["val_acc"]
    assert b.mean == pytest.approx((100 * np.mean([0.6, 0.7, 0.8]),))  # beta 1's folds only, not beta 10's
    assert source.startswith("3 fold run(s)")
    assert bands["task_loss"][0].mean == pytest.approx((1.5,))


def test_per_class_accuracy_is_the_summed_confusion_diagonal(records: list[RunRecord]) -> None:
    res = class_results(RecordIndex.build(records))[(Setting(G, ("t_small",)), "kd")]
    recs = _finals(records, method="kd", dataset="fmnist", train_size=100, teachers=["t_small"])
    total = sum(np.array(r.extra["confusion"]) for r in recs)
    assert np.array_equal(np.array(res.confusion), total) and res.seeds == 3
    assert res.per_class == pytest.approx(tuple(np.diag(total) / total.sum(1)))
    assert res.class_names == ("shirt", "shoe", "bag")
    # overall accuracy of the summed matrix = mean of the seeds' test accuracies (the fixture rounds counts)
    assert np.trace(total) / total.sum() == pytest.approx(np.mean([r.test_acc for r in recs]), abs=1 / 300)


def test_sorted_rho_band_per_method_and_teacher(records: list[RunRecord]) -> None:
    bands = rho_bands(RecordIndex.build(records))
    assert ("aft", "t_big") in bands and ("aft", "t_big (in t_small+t_big)") in bands
    b = bands[("aft", "t_big")][Setting(G, ("t_big",))]
    firsts = [r.extra["rho_sorted"]["t_big"][0] for r in _finals(records, method="aft", dataset="fmnist",
                                                                  train_size=100, teachers=["t_big"])]
    assert b.x[0] == 0.0 and b.x[-1] == 1.0 and b.mean[0] == pytest.approx(np.mean(firsts))
    assert all(m for (m, _t) in bands if m == "aft")  # only methods that logged a profile


def test_run_list_flags_collapsed_runs_and_links_config_and_student(tmp_path: Path) -> None:
    records = make_records()
    saved = tmp_path / "runs" / "aft-seed1"
    saved.mkdir(parents=True)
    (saved / "config.yaml").write_text("method: aft\n")
    i = next(i for i, r in enumerate(records) if r.method == "aft" and r.phase == "final" and r.seed == 1)
    records[i] = dataclasses.replace(records[i], extra={**records[i].extra, "collapsed": True,
                                                        "collapse_reason": "task loss stayed at 1.10",
                                                        "student_dir": str(saved)})
    paths = build_report(records, tmp_path / "out")
    html = paths.index_html.read_text(encoding="utf-8")
    n_final = sum(1 for r in records if r.phase == "final")
    assert html.count('<tr id="run-') == n_final
    row = next(line for line in html.splitlines() if "task loss stayed at 1.10" in line and "<tr" in line)
    assert 'class="flag"' in row
    assert '<a href="../runs/aft-seed1">student</a>' in row and '<a href="../runs/aft-seed1/config.yaml">' in row
    anchor = row.split('id="', 1)[1].split('"', 1)[0]
    assert f'href="runs.html#{anchor}"' in row
    runs_page = (tmp_path / "out" / "runs.html").read_text(encoding="utf-8")
    block = runs_page[runs_page.index(f'id="{anchor}"'):]
    block = block[: block.index("<h2", 10)]
    assert '"method": "aft"' in block and '"seed": 1' in block and "collapsed" in block and "confusion" not in block
    assert html.count("<a href=\"../runs/") == 2  # only the run that has a saved student links one


def test_records_without_the_new_fields_still_build_with_notes(tmp_path: Path) -> None:
    old = [dataclasses.replace(r, extra={k: v for k, v in r.extra.items()
                                          if k not in ("confusion", "rho_sorted", "class_names")})
           for r in make_records()]
    paths = build_report(old, tmp_path / "out")
    notes = " ".join(paths.notes)
    assert "extra['rho_sorted']" in notes and "extra['confusion']" in notes
    assert not [p for p in paths.plots if p.name.startswith(("classes_", "rho_sorted"))]

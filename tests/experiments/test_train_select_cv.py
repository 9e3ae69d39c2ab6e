"""`aft train --select cv --beta-grid ...`: beta and the step chosen by k-fold CV, then one run on all
labels; result.json keeps the choice and every fold's score."""

from __future__ import annotations

import json

import pytest

from aft.cli.main import main


@pytest.mark.slow
def test_train_select_cv_writes_choice_and_fold_scores(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "digits", "--student", "cnn-small", "--set", "student_options.width=4",
               "--method", "none", "--steps", "12", "--batch-size", "16", "--train-limit", "60", "--seed", "3",
               "--select", "cv", "--beta-grid", "1,0", "--folds", "2", "--output", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads((out / "result.json").read_text())
    sel = res["selection"]
    assert sel["mode"] == "cv" and sel["folds"] == 2 and sel["fold_seed"] == 3
    assert sorted((r["beta"], r["fold"]) for r in sel["fold_runs"]) == [(0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)]
    assert sum(r["val_size"] for r in sel["fold_runs"] if r["beta"] == 0.0) == 60  # the folds partition the labels
    # the chosen beta has the lowest mean fold validation loss at its step (ties: smaller beta), the
    # loss being the mean of the fold curves' val_loss there
    assert sel["score"] == "loss"
    for sc in sel["scores"]:
        runs = [r for r in sel["fold_runs"] if r["beta"] == sc["beta"]]
        at = [next(p["val_loss"] for p in r["curve"] if p["step"] == sc["step"]) for r in runs]
        assert sc["loss"] == pytest.approx(sum(at) / len(at))
    losses = {s["beta"]: s["loss"] for s in sel["scores"]}
    assert sel["beta"] == min(b for b, m in losses.items() if m == min(losses.values()))
    # the final run: all 60 labels, no validation carve-out, the chosen number of steps, test once
    assert res["train_size"] == 60 and res["val_size"] == 0 and res["beta"] == sel["beta"]
    assert res["steps"] == sel["step"] and res["test_accuracy"] is not None
    assert '"selection"' in capsys.readouterr().out


def test_beta_grid_without_select_cv_is_refused(tmp_path, capsys):
    rc = main(["train", "--dataset", "digits", "--method", "none", "--beta-grid", "0.1,1", "--output",
               str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--beta-grid is used with --select cv only" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    rc = main(["train", "--dataset", "digits", "--method", "none", "--cv-score", "accuracy", "--output",
               str(tmp_path / "x")])
    assert rc == 2 and "--cv-score is used with --select cv only" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

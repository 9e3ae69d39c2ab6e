"""What compare records keep for the report: loss/R/val curves, the test confusion matrix, sorted-rho curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aft.experiments.executor import TrainingExecutor
from aft.experiments.grid import RunJob
from aft.experiments.run_metrics import curve_points, rho_profile
from aft.experiments.suite import SuiteConfig


def _teacher():
    from aft.teachers.base import CallableTeacher

    def fn(images: np.ndarray) -> np.ndarray:
        return np.asarray(images, dtype=np.float32).reshape(len(images), -1)[:, :12] / 255.0

    return CallableTeacher(fn, dim=12, modality="image", name="rm-t", version="1")


def test_curve_points_keep_evals_and_thin_training_points() -> None:
    hist = [{"step": s, "loss": 1.0 / s, "task_loss": 0.5 / s, "reg_loss": 0.1, "beta": 1.0} for s in range(1, 201)]
    for s in (50, 100, 150, 200):
        hist[s - 1] = {**hist[s - 1], "val_accuracy": s / 400, "val_loss": 1.0}
    pts = curve_points(hist, max_train_points=20)
    assert [p["step"] for p in pts] == sorted(p["step"] for p in pts)
    evals = [p for p in pts if "val_acc" in p]
    assert [p["step"] for p in evals] == [50.0, 100.0, 150.0, 200.0]
    assert len(pts) - len(evals) == 20 and pts[-1]["step"] == 200.0
    assert all({"loss", "task_loss", "reg_loss", "beta"} <= set(p) for p in pts)
    assert next(p for p in pts if p["step"] == 50.0)["loss"] == 0.02 and pts[0]["loss"] == float(f"{pts[0]['loss']:.4g}")
    only_evals = curve_points(hist, max_train_points=0)
    assert [p["step"] for p in only_evals] == [50.0, 100.0, 150.0, 200.0]
    # a non-finite value is left out (no key), never written as NaN
    assert curve_points([{"step": 5, "val_accuracy": float("nan"), "loss": 1.0}]) == [{"step": 5.0, "loss": 1.0}]


def test_rho_profile_is_sorted_per_teacher_and_sampled() -> None:
    rho = torch.cat([torch.linspace(0, 1, 100), torch.tensor([0.3, 0.9, 0.1])])
    prof = rho_profile(rho, {"a": (0, 100), "b": (100, 103)}, points=11)
    assert prof["b"] == pytest.approx([0.9, 0.3, 0.1]) and len(prof["b"]) == 3
    assert len(prof["a"]) == 11 and prof["a"][0] == 1.0 and prof["a"][-1] == 0.0
    assert all(x >= y for x, y in zip(prof["a"], prof["a"][1:], strict=False))
    assert rho_profile(None, {"a": (0, 3)}) == {}


def test_final_record_carries_confusion_curves_and_rho(tmp_path, monkeypatch) -> None:
    import aft.teachers
    from aft.teachers import base

    monkeypatch.setattr(base, "build_teacher", lambda name, **_: _teacher())
    monkeypatch.setattr(aft.teachers, "build_teacher", lambda name, **_: _teacher())
    suite = SuiteConfig.from_dict(dict(name="rm", dataset="digits", students=["cnn-small"], teacher_sets=[["rm-t"]],
                                       methods=["aft"], train_sizes=[60], pool_size=60, test_limit=80, seeds=[0],
                                       beta_grid=[1.0], probe=False, train={"steps": 30, "log_every": 5}))
    ex = TrainingExecutor(suite, tmp_path / "store", progress=False)
    ex.prepare_features()
    rec = ex(RunJob("rm", "digits", "cnn-small", ("rm-t",), "aft", 1.0, 60, 0, "final"))
    cm = np.array(rec.extra["confusion"])
    assert cm.shape == (10, 10) and cm.sum() == 80
    assert np.trace(cm) / cm.sum() == rec.test_acc  # the same argmax as the test accuracy
    assert len(rec.extra["class_names"]) == 10
    assert any("val_acc" in p for p in rec.curve)
    assert all({"loss", "task_loss", "reg_loss"} <= set(p) for p in rec.curve if "val_acc" not in p)
    prof = rec.extra["rho_sorted"]["rm-t"]
    assert len(prof) == 12 and prof == sorted(prof, reverse=True)
    sel = ex(RunJob("rm", "digits", "cnn-small", ("rm-t",), "aft", 1.0, 60, 0, "select"))
    assert "confusion" not in sel.extra  # select runs never touch test
    assert sel.curve and all("val_acc" in p for p in sel.curve)  # selection runs: evaluation points only
    fold = ex(RunJob("rm", "digits", "cnn-small", ("rm-t",), "aft", 1.0, 60, 0, "cv", fold=1))
    assert fold.extra["cv_score"] == "loss" and fold.curve
    # the fold's validation cross-entropy is kept at every evaluation point: above 0, below chance's
    # log(10) by the end of 30 steps only if the student learned; at least finite and positive
    assert all(p["val_loss"] > 0 and math.isfinite(p["val_loss"]) for p in fold.curve)


def test_train_by_size_gives_one_size_its_own_budget(tmp_path) -> None:
    suite = SuiteConfig.from_dict(dict(name="tbs", dataset="digits", students=["cnn-small"], teacher_sets=[["rm-t"]],
                                       methods=["none"], train_sizes=[40, 60], pool_size=60, test_limit=40,
                                       seeds=[0], probe=False, train={"steps": 12, "log_every": 4},
                                       train_by_size={60: {"steps": 20}}))
    ex = TrainingExecutor(suite, tmp_path / "store", progress=False)
    small = ex(RunJob("tbs", "digits", "cnn-small", (), "none", 0.0, 40, 0, "final"))
    large = ex(RunJob("tbs", "digits", "cnn-small", (), "none", 0.0, 60, 0, "final"))
    assert (small.extra["steps"], large.extra["steps"]) == (12, 20)

"""Gradient accumulation (per-micro-batch kernel), experiment trackers, early stopping, CPU threads."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
from _training_helpers import TinyNet

from aft.errors import ConfigError
from aft.training import TrainConfig, train


def _grads_per_step(net: torch.nn.Module, splits, features, **cfg) -> list[list[torch.Tensor]]:
    """Train `net` and return the student gradients of every optimizer step."""
    grads: list[list[torch.Tensor]] = []
    base = dict(val_fraction=0.0, test_split=None, progress=False, tensorboard=False, beta_warmup=0,
                lr=1e-12, prior_lr=1e-12, schedule="constant", seed=0)  # weights ~frozen: grads comparable
    base.update(cfg)
    train(TrainConfig(**base), features=features, train_split=splits[0].subset(list(range(64))),
          student_module=net, on_step=lambda s, r: grads.append([p.grad.detach().clone() for p in net.parameters()]))
    return grads


def _close(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.allclose(x, y, rtol=1e-4, atol=1e-6) for x, y in zip(a, b, strict=True))


def test_accumulation_without_a_regularizer_equals_the_full_batch(splits, features):
    net = TinyNet()
    full = _grads_per_step(copy.deepcopy(net), splits, features, method="none", batch_size=32, steps=1)
    acc = _grads_per_step(copy.deepcopy(net), splits, features, method="none", batch_size=32, steps=1,
                          grad_accum_steps=2)
    assert _close(full[0], acc[0])
    assert max(float(g.abs().max()) for g in full[0]) > 1e-3  # a real gradient, not zeros


def test_aft_accumulation_is_the_mean_of_the_micro_batch_losses(splits, features):
    """2 x 16 accumulated == the mean of the two batch-16 gradients (the kernel is per micro-batch),
    and differs from one batch of 32 (whose kernel spans all 32 samples)."""
    net = TinyNet()
    kw = dict(method="aft", beta=10.0, teachers=["pixels", "noise"])
    acc = _grads_per_step(copy.deepcopy(net), splits, features, batch_size=32, steps=1, grad_accum_steps=2, **kw)
    # a batch-16 run's steps 1 and 2 are the two micro-batches (same epoch order), at ~the same weights
    micro = _grads_per_step(copy.deepcopy(net), splits, features, batch_size=16, steps=2, **kw)
    mean = [(a + b) / 2 for a, b in zip(micro[0], micro[1], strict=True)]
    assert _close(acc[0], mean)
    full = _grads_per_step(copy.deepcopy(net), splits, features, batch_size=32, steps=1, **kw)
    assert not _close(acc[0], full[0])  # the global-batch kernel is another objective


def test_accumulation_config_is_checked():
    with pytest.raises(ConfigError, match="divisible by grad_accum_steps"):
        TrainConfig(batch_size=30, grad_accum_steps=4).validate()
    with pytest.raises(ConfigError, match="grad_accum_steps must be >= 1"):
        TrainConfig(grad_accum_steps=0).validate()


# --- early stopping ---------------------------------------------------------------------------
def test_early_stopping_stops_and_keeps_the_best_weights(tmp_path, splits):
    out = tmp_path / "run"
    seen: dict[int, dict] = {}
    # a learning rate so large that validation accuracy peaks early, then does not improve
    res = train(TrainConfig(method="none", student="cnn-small", student_options={"image_size": 8, "width": 4},
                            steps=400, batch_size=32, lr=0.3, eval_every=5, select="best",
                            early_stopping_patience=3, output=str(out), progress=False, tensorboard=False,
                            test_split=None),
                train_split=splits[0], on_step=lambda s, r: seen.update({s: r}) if "val_accuracy" in r else None)
    evals = sorted(seen)
    assert res.steps < 400 and res.steps == evals[-1]  # stopped at an evaluation
    accs = [seen[s]["val_accuracy"] for s in evals]
    best = max(accs)
    best_step = evals[accs.index(best)]
    assert res.selected_step == best_step and res.val_accuracy == pytest.approx(best)
    assert all(a <= best for a in accs[accs.index(best) + 1:]) and len(evals) - 1 - accs.index(best) == 3
    assert seen[res.steps].get("early_stop") is True
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == res.steps and result["selected_step"] == best_step


def test_early_stopping_needs_periodic_validation():
    with pytest.raises(ConfigError, match="eval_every"):
        TrainConfig(early_stopping_patience=2).validate()


# --- trackers -----------------------------------------------------------------------------------
def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(_has("tensorboard"), reason="tests the absent-package path")
def test_default_tensorboard_is_skipped_with_one_info_line(tmp_path, splits, caplog):
    with caplog.at_level(logging.INFO, logger="aft.training.tracking"):
        train(TrainConfig(method="none", student="cnn-small", student_options={"image_size": 8, "width": 4}, steps=2,
                          batch_size=16, output=str(tmp_path / "run"), progress=False), train_split=splits[0])
    lines = [r.getMessage() for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert len(lines) == 1 and "pip install 'aft[tensorboard]'" in lines[0]
    assert not (tmp_path / "run" / "tensorboard").exists()


@pytest.mark.parametrize("name", ["tensorboard", "wandb", "mlflow"])
def test_requested_tracker_without_its_package_is_one_line_before_any_work(tmp_path, splits, name):
    if _has(name):
        pytest.skip(f"{name} is installed")
    with pytest.raises(ConfigError, match=rf"pip install 'aft\[{name}\]'") as info:
        train(TrainConfig(method="none", steps=2, batch_size=16, report_to=[name], output=str(tmp_path / "run"),
                          progress=False), train_split=splits[0])
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_unknown_tracker_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid trackers: mlflow, tensorboard, wandb"):
        TrainConfig(report_to=["comet"]).validate()


def test_trackers_receive_the_metrics_records(tmp_path, splits, monkeypatch):
    from aft.training import tracking

    logged: list[tuple[int, dict]] = []

    class Memory:
        def __init__(self, run_dir, config):
            self.config = config

        def log(self, metrics, step):
            logged.append((step, metrics))

        def close(self):
            logged.append((-1, {}))

    monkeypatch.setitem(tracking.TRACKERS._items, "wandb", ("json", Memory))  # a stand-in target, same protocol
    out = tmp_path / "run"
    train(TrainConfig(method="none", student="cnn-small", student_options={"image_size": 8, "width": 4}, steps=4,
                      batch_size=16, log_every=2, report_to=["wandb"], output=str(out), progress=False,
                      tensorboard=False), train_split=splits[0])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert [s for s, _ in logged[:-1]] == steps and logged[-1][0] == -1
    assert logged[0][1]["loss"] == pytest.approx(records[0]["loss"]) and "step" not in logged[0][1]


# --- CPU threads ---------------------------------------------------------------------------------
def test_default_threads_budget():
    from aft.runtime import default_threads

    assert default_threads(1, cpus=2) == 1  # the measured optimum on a shared 2-core box
    assert default_threads(1, cpus=8) == 4 and default_threads(1, cpus=64) == 4
    assert default_threads(4, cpus=16) == 2 and default_threads(8, cpus=4) == 1
    with pytest.raises(ConfigError):
        default_threads(0)


def test_configure_threads_respects_the_user(monkeypatch, caplog):
    from aft import runtime

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(2)
        assert runtime.configure_threads() is None and torch.get_num_threads() == 2  # env: left alone
        with caplog.at_level(logging.INFO, logger="aft.runtime"):
            assert runtime.configure_threads(1) == 1 and torch.get_num_threads() == 1  # --threads wins
        assert any("CPU threads: 1 (as requested)" in r.getMessage() for r in caplog.records)
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        monkeypatch.setattr(runtime, "cpu_count", lambda: 8)
        assert runtime.configure_threads() == 4 and torch.get_num_threads() == 4
        with pytest.raises(ConfigError, match="threads must be"):
            runtime.configure_threads(0)
    finally:
        torch.set_num_threads(before)


def test_python_api_leaves_threads_alone_unless_asked(tmp_path, splits):
    before = torch.get_num_threads()
    seen: list[int] = []
    cfg = dict(method="none", student="cnn-small", student_options={"image_size": 8, "width": 4}, steps=2,
               batch_size=16, progress=False, tensorboard=False)
    train(TrainConfig(**cfg), train_split=splits[0], on_step=lambda s, r: seen.append(torch.get_num_threads()))
    assert seen == [before, before]
    want = 2 if before != 2 else 1
    train(TrainConfig(threads=want, **cfg), train_split=splits[0],
          on_step=lambda s, r: seen.append(torch.get_num_threads()))
    assert seen[2:] == [want, want] and torch.get_num_threads() == before  # restored after the run


def test_cli_logs_the_thread_choice(tmp_path, monkeypatch):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(root / "src")
    proc = subprocess.run([sys.executable, "-m", "aft", "-v", "train", "--dataset", "digits", "--method", "none",
                           "--steps", "1", "--batch-size", "16", "--threads", "1", "--no-progress", "--output",
                           str(tmp_path / "run"), "--set", "tensorboard=false"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if "CPU threads" in ln] == ["INFO aft.runtime: CPU threads: 1 (as requested)"]


@pytest.mark.skipif(not _has("tensorboard"), reason="needs the tensorboard package (aft[tensorboard])")
def test_default_tensorboard_writes_the_metrics(tmp_path, splits):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(TrainConfig(method="none", student="cnn-small", student_options={"image_size": 8, "width": 4}, steps=4,
                      batch_size=16, log_every=2, output=str(out), progress=False), train_split=splits[0])
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [2, 4]

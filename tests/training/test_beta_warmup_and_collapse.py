"""beta warm-up (aft.training.beta_schedule) and the collapse check (aft.training.collapse).

The slow test at the end runs the getting-started commands of docs/getting-started.md with the real
EfficientNet-Lite0 teacher: before the warm-up, AFT at beta 1 ended at chance there (10-20 % test
accuracy vs 67 % for STL) and nothing said so.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _training_helpers import TinyNet
from torch import nn

from aft.training import TrainConfig, train
from aft.training.beta_schedule import BetaSchedule, label_entropy
from aft.training.collapse import check_collapse, feature_spread, final_task_loss


def test_linear_warmup_and_constant_beta():
    s = BetaSchedule(beta=2.0, warmup=4, total_steps=50)
    assert [s.value(t) for t in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert [BetaSchedule(2.0, 0, 50).value(t) for t in (0, 7, 49)] == [2.0, 2.0, 2.0]
    assert not BetaSchedule(2.0, 0, 50).gated and BetaSchedule(2.0, "auto", 50).gated
    assert BetaSchedule(0.0, "auto", 50).value(10) == 0.0 and not BetaSchedule(0.0, "auto", 50).gated


def test_auto_gate_opens_when_the_window_mean_leaves_chance_then_ramps():
    chance = math.log(10)
    s = BetaSchedule(beta=10.0, warmup="auto", total_steps=100, chance_loss=chance, window=3, ramp_frac=0.1)
    losses = [2.31, 2.30, 2.29, 2.0, 1.9, 1.8, 1.0]
    opened = None
    for t, loss in enumerate(losses):
        assert s.value(t) == 0.0 or opened is not None
        s.observe(t, loss)
        if s.opened_at is not None and opened is None:
            opened = t
    # independent computation: first t whose 3-step mean is below 0.9 * ln 10 (2.0723)
    means = [np.mean(losses[t - 2 : t + 1]) for t in range(2, len(losses))]
    first = 2 + next(i for i, m in enumerate(means) if m < 0.9 * chance)
    assert opened == first and s.opened_at == first + 1
    ramp = [s.value(t) for t in range(first + 1, first + 12)]
    assert ramp[0] == pytest.approx(1.0) and ramp[9] == pytest.approx(10.0) and ramp[10] == 10.0
    assert all(b > a for a, b in zip(ramp[:10], ramp[1:10], strict=False))


def test_auto_gate_opens_by_the_deadline_and_state_round_trips():
    s = BetaSchedule(beta=1.0, warmup="auto", total_steps=20, chance_loss=1.0, open_by=0.3)
    for t in range(5):
        s.observe(t, 5.0)  # never leaves chance
    assert s.opened_at is None
    state = s.state_dict()
    s.observe(5, 5.0)
    assert s.opened_at == 6  # ceil(0.3 * 20) = 6 steps
    again = BetaSchedule(beta=1.0, warmup="auto", total_steps=20, chance_loss=1.0, open_by=0.3)
    again.load_state_dict(state)
    again.observe(5, 5.0)
    assert again.opened_at == s.opened_at and again.value(12) == s.value(12)


def test_label_entropy_matches_the_definition():
    labels = np.array([0, 0, 0, 1, 2, 2])
    p = np.array([3, 1, 2]) / 6
    assert label_entropy(labels, 4) == pytest.approx(float(-(p * np.log(p)).sum()))
    assert label_entropy(np.arange(10), 10) == pytest.approx(math.log(10))


def test_spread_gate_opens_at_the_first_step_whose_features_spread_enough():
    s = BetaSchedule(beta=2.0, warmup="spread", total_steps=100, chance_loss=2.3, spread_tau=0.2, ramp_frac=0.04)
    assert s.wants_spread
    spreads = [0.01, 0.05, 0.19, 0.21, 0.5]
    for t, sp in enumerate(spreads):
        s.observe(t, 2.3, sp)  # the task loss never leaves chance: only the spread can open the gate
    first = next(t for t, sp in enumerate(spreads) if sp >= 0.2)
    assert s.opened_at == first + 1 and not s.wants_spread
    assert [s.value(t) for t in range(first + 1, first + 6)] == [0.5, 1.0, 1.5, 2.0, 2.0]


def test_feature_spread_is_scale_free_and_zero_for_constant_rows():
    x = torch.randn(50, 8, dtype=torch.float64) + 3.0
    assert feature_spread(x) == pytest.approx(feature_spread(7.5 * x), rel=1e-9)
    assert feature_spread(torch.ones(20, 8)) == pytest.approx(0.0, abs=1e-12)


def test_final_task_loss_averages_the_tail():
    hist = [{"step": s, "task_loss": float(s)} for s in range(10, 101, 10)]
    assert final_task_loss(hist, 100, tail=0.2) == pytest.approx(np.mean([90.0, 100.0]))
    assert final_task_loss([], 100) is None


class _Constant(nn.Module):
    """Predicts class 3 for every input, with constant features."""

    def forward(self, x):
        logits = torch.zeros(len(x), 10)
        logits[:, 3] = 1.0
        return logits, torch.ones(len(x), 4)


def test_check_collapse_flags_a_constant_student_and_passes_a_learnt_one():
    x = torch.randn(60, 64)
    y = torch.arange(60) % 10
    hist = [{"step": 100, "task_loss": 2.30}]
    bad = check_collapse(_Constant(), x, y, math.log(10), hist, 100, "validation", torch.device("cpu"))
    assert bad.collapsed and "never left chance" in bad.reason and "100% of the validation" in bad.reason
    assert bad.dead_features == 1.0 and bad.prediction_share == 1.0

    class Oracle(nn.Module):
        def forward(self, inp):
            return torch.nn.functional.one_hot(y[: len(inp)], 10).float() * 5, inp[:, :4]

    good = check_collapse(Oracle(), x, y, math.log(10), [{"step": 100, "task_loss": 0.2}], 100, "validation",
                          torch.device("cpu"))
    assert not good.collapsed and good.reason == "" and good.accuracy == 1.0


def seeded_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(dropout=0.3)


def _cfg(**kw):
    base = dict(student="module", method="aft", beta=1.0, steps=30, batch_size=32, lr=3e-3,
                log_every=1, progress=False, tensorboard=False, test_split=None)
    base.update(kw)
    return TrainConfig(**base)


def test_loop_holds_beta_at_zero_until_the_gate_opens(splits, features):
    res = train(_cfg(beta_warmup="auto"), features=features, train_split=splits[0], student_module=seeded_net())
    betas = [r["beta"] for r in res.history if "beta" in r]
    assert betas[0] == 0.0 and betas[-1] == 1.0
    first_nonzero = next(i for i, b in enumerate(betas) if b > 0)
    assert 0 < first_nonzero <= math.ceil(0.3 * 30)  # gate opens by open_by * steps at the latest
    const = train(_cfg(beta_warmup=0), features=features, train_split=splits[0], student_module=seeded_net())
    assert all(r["beta"] == 1.0 for r in const.history if "beta" in r)
    assert res.collapse is not None and const.collapse is not None


def test_loop_spread_gate_opens_at_the_first_batch_whose_features_spread_enough(splits, features):
    spreads: list[float] = []

    class Probe(TinyNet):
        def forward(self, x):
            logits, phi = super().forward(x)
            if self.training:  # one training forward per step (single process, no accumulation)
                phi = phi + 2.0 * 0.5 ** len(spreads)  # near-constant rows at first, spreading with steps
                spreads.append(feature_spread(phi))
            return logits, phi

    torch.manual_seed(0)
    res = train(_cfg(beta_warmup="spread"), features=features, train_split=splits[0], student_module=Probe(dropout=0.3))
    # independent computation: the gate opens after the first step t whose batch spread >= 0.2 (or
    # at open_by = 30 % of the steps); beta is then > 0 from step t + 1 on (logged as step t + 2)
    t = next((i for i, sp in enumerate(spreads) if sp >= 0.2), math.ceil(0.3 * 30) - 1)
    assert 2 <= t < 8, spreads  # the fixture makes the crossing fall inside the run
    betas = {int(r["step"]): r["beta"] for r in res.history if "beta" in r}
    assert all(betas[k] == 0.0 for k in betas if k <= t + 1)
    assert betas[t + 2] > 0 and betas[30] == 1.0
    assert json.loads(json.dumps(res.to_json())).get("beta_opened_at", t + 1) == t + 1


def test_resume_inside_the_warmup_continues_the_same_gate(tmp_path, splits, features):
    kw = dict(steps=16, checkpoint_every=3, beta_warmup="auto", beta=2.0)
    full = train(_cfg(output=str(tmp_path / "full"), **kw), features=features, train_split=splits[0],
                 student_module=seeded_net())

    class Stop(RuntimeError):
        pass

    def die(step, _):
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        train(_cfg(output=str(tmp_path / "cut"), **kw), features=features, train_split=splits[0],
              student_module=seeded_net(), on_step=die)
    resumed = train(_cfg(output=str(tmp_path / "cut"), resume=True, **kw), features=features,
                    train_split=splits[0], student_module=seeded_net())
    sa, sb = full.student.state_dict(), resumed.student.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ra = json.loads((tmp_path / "full" / "result.json").read_text())
    rb = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert ra["beta_opened_at"] == rb["beta_opened_at"] is not None


def test_warmup_value_is_validated():
    from aft.errors import ConfigError

    with pytest.raises(ConfigError, match="beta_warmup"):
        TrainConfig(beta_warmup=-3).validate()
    with pytest.raises(ConfigError, match="beta_warmup"):
        TrainConfig(beta_warmup="soon").validate()


def _aft(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aft", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.assets
def test_getting_started_aft_is_not_below_stl_and_the_old_schedule_is_flagged(tmp_path, real_asset):
    """docs/getting-started.md: STL vs AFT at beta 1 (300 steps); and beta 10 with constant beta collapses, flagged."""
    real_asset("efficientnet-lite0")
    ext = _aft(tmp_path, "extract", "--teacher", "efficientnet-lite0", "--dataset", "digits", "--split", "train",
               "--resolution", "64", "--store", "features", "--no-progress")
    assert ext.returncode == 0, ext.stderr
    common = ["--dataset", "digits", "--steps", "300", "--batch-size", "64", "--no-progress"]
    aft_args = ["--teacher", "efficientnet-lite0", "--store", "features"]
    runs = {
        "stl": ["--method", "none", "--output", "runs/digits-stl"],
        "aft": ["--method", "aft", "--beta", "1", *aft_args, "--output", "runs/digits-aft"],
        "old": ["--method", "aft", "--beta", "10", *aft_args, "--set", "beta_warmup=0", "--output", "runs/old"],
    }
    out = {}
    for name, args in runs.items():
        proc = _aft(tmp_path, "train", *common, *args)
        assert proc.returncode == 0, proc.stderr
        out[name] = (json.loads((tmp_path / args[-1] / "result.json").read_text()), proc.stderr)
    stl, aft, old = (out[k][0] for k in ("stl", "aft", "old"))
    assert not stl["collapsed"] and not aft["collapsed"]
    assert aft["test_accuracy"] >= stl["test_accuracy"] - 0.01, (aft["test_accuracy"], stl["test_accuracy"])
    assert aft["beta_opened_at"] is not None and 0 < aft["beta_opened_at"] <= 90
    # the paper's constant beta at 10 holds this from-scratch student at chance: detected and said
    assert old["collapsed"] and old["test_accuracy"] < 0.2
    assert "run did not learn" in out["old"][1] and "never left chance" in old["collapse"]["reason"]

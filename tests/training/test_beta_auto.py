"""`--beta auto` (``beta_rule: auto``): beta measured from the ratio of the task's and the
regularizer's gradient norms when the warm-up starts (aft.training.beta_schedule), in the loop, the
CLI, the comparison grid and the report."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from _training_helpers import TinyNet

from aft.training import TrainConfig, train
from aft.training.beta_schedule import AUTO_MAX, BetaSchedule
from aft.training.loop import _grad_norm


def test_schedule_measures_then_holds_the_scaled_median():
    s = BetaSchedule(beta=2.0, warmup=0, total_steps=50, rule="auto", auto_steps=3)
    assert s.measuring and s.value(0) == 0.0
    for t, ratio in enumerate([1.0, 3.0, float("nan"), 2.0]):  # a non-finite ratio is not counted
        assert s.value(t) == 0.0
        s.observe_ratio(t, ratio)
    assert s.resolved == pytest.approx(2.0 * 2.0) and s.resolved_at == 4 and not s.measuring
    assert [s.value(t) for t in (4, 30, 49)] == [4.0, 4.0, 4.0]
    clipped = BetaSchedule(beta=1.0, warmup=0, total_steps=10, rule="auto", auto_steps=1)
    clipped.observe_ratio(0, 1e9)
    assert clipped.resolved == AUTO_MAX
    with pytest.raises(ValueError, match="beta rule"):
        BetaSchedule(beta=1.0, warmup=0, total_steps=10, rule="guess")


def test_gated_schedule_measures_after_the_gate_and_ramps_from_there():
    s = BetaSchedule(beta=1.0, warmup="auto", total_steps=100, chance_loss=2.3, window=1, ramp_frac=0.1,
                     rule="auto", auto_steps=2)
    s.observe_ratio(0, 5.0)  # the gate is closed: not measuring yet
    assert not s.measuring and s.state_dict()["ratios"] == []
    s.observe(0, 1.0)  # leaves chance: the gate opens after step 0
    assert s.opened_at == 1 and s.measuring and s.value(1) == 0.0
    s.observe_ratio(1, 4.0)
    state = s.state_dict()
    again = BetaSchedule(beta=1.0, warmup="auto", total_steps=100, chance_loss=2.3, rule="auto", auto_steps=2)
    again.load_state_dict(json.loads(json.dumps(state)))  # a checkpoint mid-measurement resumes it
    for sch in (s, again):
        sch.observe_ratio(2, 6.0)
        assert sch.resolved == pytest.approx(5.0) and sch.resolved_at == 3
        ramp = [sch.value(t) for t in range(3, 14)]
        assert ramp[0] == pytest.approx(0.5) and ramp[9] == pytest.approx(5.0) and ramp[10] == 5.0


def test_grad_norm_matches_backward():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    x = torch.randn(7, 5)
    loss = net(x).pow(2).mean()
    params = list(net.parameters())
    got = _grad_norm(loss, params)
    loss.backward()  # the graph was retained
    want = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in params))
    assert got == pytest.approx(want, rel=1e-5)
    unused = torch.nn.Parameter(torch.ones(2))
    assert _grad_norm(net(x).sum(), [unused]) == 0.0


def _cfg(**kw):
    base = dict(student="module", method="aft", beta_auto_scale=1.0, beta_rule="auto", steps=30, batch_size=32, lr=3e-3,
                log_every=1, progress=False, tensorboard=False, test_split=None, beta_warmup=0)
    base.update(kw)
    return TrainConfig(**base)


def _net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def test_loop_measures_beta_then_trains_with_it_and_the_scale_multiplies_it(splits, features, tmp_path):
    res = train(_cfg(output=str(tmp_path / "a")), features=features, train_split=splits[0], student_module=_net())
    betas = [r["beta"] for r in res.history if "beta" in r]
    # beta 0 while the first 5 steps measure, then the measured value (constant: beta_warmup 0)
    assert betas[:5] == [0.0] * 5 and res.beta_auto is not None and res.beta_auto > 0
    assert all(b == pytest.approx(res.beta_auto) for b in betas[5:])
    assert json.loads((tmp_path / "a" / "result.json").read_text())["beta_auto"] == pytest.approx(res.beta_auto)
    # the measurement steps train with beta 0, so the same student and seed measure the same ratios:
    # scale 2 gives exactly twice the beta (an independent check that the scale multiplies the median)
    res2 = train(_cfg(beta_auto_scale=2.0), features=features, train_split=splits[0], student_module=_net())
    assert res2.beta_auto == pytest.approx(2 * res.beta_auto, rel=1e-6)
    fixed = train(_cfg(beta_rule="fixed"), features=features, train_split=splits[0], student_module=_net())
    assert fixed.beta_auto is None


def test_resume_during_the_measurement_gives_the_same_beta_and_weights(tmp_path, splits, features):
    kw = dict(steps=16, checkpoint_every=3)
    full = train(_cfg(output=str(tmp_path / "full"), **kw), features=features, train_split=splits[0],
                 student_module=_net())

    class Stop(RuntimeError):
        pass

    def die(step, _):
        if step == 4:  # checkpoint at step 3: two of the five ratios measured
            raise Stop

    with pytest.raises(Stop):
        train(_cfg(output=str(tmp_path / "cut"), **kw), features=features, train_split=splits[0],
              student_module=_net(), on_step=die)
    resumed = train(_cfg(output=str(tmp_path / "cut"), resume=True, **kw), features=features,
                    train_split=splits[0], student_module=_net())
    assert resumed.beta_auto == pytest.approx(full.beta_auto, rel=1e-6)
    sa, sb = full.student.state_dict(), resumed.student.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aft", "train", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_cli_beta_auto_flag(tmp_path):
    out = _cli("--dataset", "digits", "--beta", "auto", "--print-config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert cfg["beta_rule"] == "auto" and cfg["beta_auto_scale"] == 3.0
    bad = _cli("--dataset", "digits", "--beta", "autox", cwd=tmp_path)
    assert bad.returncode == 2 and "neither a number nor 'auto'" in bad.stderr
    cv = _cli("--dataset", "digits", "--beta", "auto", "--select", "cv", cwd=tmp_path)
    assert cv.returncode == 2 and "--beta auto needs no grid" in cv.stderr
    ddp = _cli("--dataset", "digits", "--beta", "auto", "--nproc", "2", cwd=tmp_path)
    assert ddp.returncode == 2 and "one process" in ddp.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything is written

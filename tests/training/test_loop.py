"""The training loop: outputs, schedule, reshuffling, determinism and resume."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from _training_helpers import TinyNet
from safetensors.torch import load_file

from aft.training import TrainConfig, epoch_permutation, load_student, lr_factor, train


def cfg(**kw) -> TrainConfig:
    base = dict(batch_size=32, steps=12, lr=1e-2, beta=1.0, progress=False, tensorboard=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", ["none", "aft"])
def test_loop_runs_and_writes_outputs(tmp_path, splits, features, method):
    out = tmp_path / method
    res = train(cfg(method=method, output=str(out), eval_every=6), features=features, train_split=splits[0],
                test_split=splits[1], student_module=TinyNet())
    for name in ("config.yaml", "metrics.jsonl", "result.json", "student.safetensors", "student.json",
                 "regularizer.safetensors"):
        assert (out / name).exists(), name
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 12 and result["student_params"] == sum(p.numel() for p in TinyNet().parameters())
    assert 0.0 <= result["test_accuracy"] <= 1.0 and res.test_accuracy == result["test_accuracy"]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "val_accuracy" in r and not r.get("final")] == [6, 12]
    reg = load_file(str(out / "regularizer.safetensors"))
    if method == "aft":
        assert set(result["rho_summary"]) == {"pixels", "noise"}
        assert reg["s"].shape == (features.dim,) and not torch.all(reg["s"] == 0)  # rho learned
    else:
        assert result["rho_summary"] is None and reg == {}


def test_resolved_config_saved(tmp_path, splits, features):
    c = cfg(method="aft", output=str(tmp_path / "r"), method_options={"kernel_form": "explicit"})
    train(c, features=features, train_split=splits[0], student_module=TinyNet())
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert TrainConfig.from_dict(saved) == TrainConfig.from_dict(c.to_dict())
    assert saved["method_options"] == {"kernel_form": "explicit"} and saved["prior_lr"] == 1e-2


def test_cosine_schedule_per_step(splits):
    total, warm, lr = 10, 3, 0.02
    res = train(cfg(method="none", steps=total, warmup_steps=warm, lr=lr, log_every=1, val_fraction=0.0),
                train_split=splits[0], student_module=TinyNet())
    got = [r["lr"] for r in res.history]
    expected = [lr * ((t + 1) / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - warm))))
                for t in range(total)]
    assert got == pytest.approx(expected, rel=1e-12)
    assert lr_factor(total, total, warm) == pytest.approx(0.0, abs=1e-12)


def test_reshuffle_per_epoch_and_deterministic():
    a0, a1 = epoch_permutation(50, 1, 0), epoch_permutation(50, 1, 1)
    assert not torch.equal(a0, a1)
    assert torch.equal(a0, epoch_permutation(50, 1, 0))
    assert not torch.equal(a0, epoch_permutation(50, 2, 0))
    assert sorted(a1.tolist()) == list(range(50))


def test_loop_sees_new_batches_each_epoch(splits):
    seen: list[list[float]] = []

    class Recorder(TinyNet):
        def forward(self, x):
            if self.training:
                seen.append(x.flatten(1).sum(1).tolist())
            return super().forward(x)

    # 216 train samples / 72 = 3 batches per epoch; 6 steps = 2 epochs
    def run():
        seen.clear()
        train(cfg(method="none", batch_size=72, steps=6), train_split=splits[0], student_module=Recorder())
        return [list(b) for b in seen]  # the dry forward runs in eval mode: not recorded

    first = run()
    assert first == run()  # deterministic given the seed
    epoch0, epoch1 = first[:3], first[3:]
    assert epoch0 != epoch1 and sorted(sum(epoch0, [])) == pytest.approx(sorted(sum(epoch1, [])))


def test_same_seed_bit_identical(splits, features):
    states = []
    for _ in range(2):  # student built by name: its init is seeded by the loop
        res = train(cfg(method="aft", student="cnn-small", steps=4,
                        student_options={"image_size": 8, "width": 4, "dropout": 0.2}),
                    features=features, train_split=splits[0])
        states.append({**res.student.state_dict(), **{f"r.{k}": v for k, v in res.regularizer.state_dict().items()}})
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


class Kill(RuntimeError):
    pass


def seeded_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(dropout=0.3)


def test_resume_bit_identical(tmp_path, splits, features):
    kw = dict(method="aft", steps=14, checkpoint_every=4, eval_every=5, select="best")
    full = train(cfg(output=str(tmp_path / "full"), **kw), features=features, train_split=splits[0],
                 test_split=splits[1], student_module=seeded_net())

    def die(step, _):
        if step == 10:
            raise Kill

    with pytest.raises(Kill):
        train(cfg(output=str(tmp_path / "cut"), **kw), features=features, train_split=splits[0],
              test_split=splits[1], student_module=seeded_net(), on_step=die)
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint.prev.pt").exists()  # previous good one kept
    resumed = train(cfg(output=str(tmp_path / "cut"), resume=True, **kw), features=features,
                    train_split=splits[0], test_split=splits[1], student_module=seeded_net())
    for a, b in ((full.student, resumed.student), (full.regularizer, resumed.regularizer)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (full.selected_step, full.test_accuracy) == (resumed.selected_step, resumed.test_accuracy)
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    full_steps = [json.loads(x)["step"] for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert steps == full_steps  # records after the checkpoint were replaced, not duplicated


def test_load_student_round_trip(tmp_path, splits):
    out = tmp_path / "cnn"
    res = train(cfg(method="none", student="cnn-small", student_options={"image_size": 8, "width": 8},
                    steps=3, output=str(out)), train_split=splits[0])
    student = load_student(out)
    assert student.class_names == [str(i) for i in range(10)] and student.feature_dim == 128
    x = student.preprocess(splits[1].inputs[:5])
    with torch.no_grad():
        assert torch.equal(student(x)[0], res.student(x)[0])


def test_deterministic_switch_is_on_during_the_run_and_restored_after(splits, features):
    seen: list[bool] = []
    assert not torch.are_deterministic_algorithms_enabled()
    res = train(cfg(method="aft", steps=3, deterministic=True), features=features, train_split=splits[0],
                student_module=seeded_net(), on_step=lambda step, rec: seen.append(torch.are_deterministic_algorithms_enabled()))
    assert seen == [True, True, True]
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    # same math: the deterministic run's weights equal a default run's (CPU kernels are deterministic already)
    plain = train(cfg(method="aft", steps=3), features=features, train_split=splits[0], student_module=seeded_net())
    assert all(torch.equal(v, plain.student.state_dict()[k]) for k, v in res.student.state_dict().items())


def test_deterministic_switch_restores_settings_after_an_error(splits, features):
    def boom(step, rec):
        raise Kill("stop")

    with pytest.raises(Kill):
        train(cfg(method="aft", steps=3, deterministic=True), features=features, train_split=splits[0],
              student_module=seeded_net(), on_step=boom)
    assert not torch.are_deterministic_algorithms_enabled()

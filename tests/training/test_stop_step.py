"""`stop_step`: the run ends early while the schedule spans `steps` (how a CV stopping step is retrained)."""

from __future__ import annotations

import torch
from _training_helpers import TinyNet

from aft.training import TrainConfig, train


def _net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def _cfg(**kw) -> TrainConfig:
    base = dict(student="module", method="none", beta=0.0, steps=20, batch_size=32, lr=1e-2, log_every=1,
                progress=False, tensorboard=False, test_split=None, val_fraction=0.0)
    base.update(kw)
    return TrainConfig(**base)


def test_stop_step_is_a_prefix_of_the_full_run_not_a_shorter_schedule(splits):
    full = train(_cfg(), train_split=splits[0], student_module=_net())
    cut = train(_cfg(stop_step=8), train_split=splits[0], student_module=_net())
    short = train(_cfg(steps=8), train_split=splits[0], student_module=_net())
    lr_full = [r["lr"] for r in full.history][:8]
    assert [r["lr"] for r in cut.history] == lr_full  # the 20-step cosine, cut after 8 steps
    assert cut.steps == 8 and cut.selected_step == 8
    assert [r["lr"] for r in short.history] != lr_full  # a new 8-step cosine differs
    assert [r["loss"] for r in cut.history] == [r["loss"] for r in full.history][:8]  # same trajectory, same ops

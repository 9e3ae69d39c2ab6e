"""The effective regularizer weight per step: beta, warmed up so a from-scratch student can start.

Why (measured on digits, docs/regularizers.md "Why AFT warms beta up"): AFT's kernel compares
column-centred, row-normalised features, so R is invariant to the scale of the student's features
and its gradient grows like ``1 / ||phi - mean(phi)||``. A student trained from scratch starts with
features that barely vary across samples (cnn-small: centred norm 0.017 against an uncentred norm
of 0.68), so at beta = 1 the gradient of R is ~15x the task's. Adam follows R's noisy gradient, the
spread of the features does not grow (ReLU units die), R's gradient stays large, and the task loss
stays at ln C for the whole run. The task alone grows that spread within a few dozen steps.

``beta_warmup: auto`` (the default) therefore holds beta at 0 until the student has left chance,
i.e. until the mean task loss of the last `window` steps falls below ``(1 - drop)`` times the
entropy of the training labels, then ramps it linearly to beta over ``ramp_frac`` of the steps. If
that has not happened after ``open_by`` of the steps, the gate opens anyway (the collapse check then
says whether the run learnt). After the ramp the loss is exactly the paper's ``CE + beta * R``, so
its optimum is unchanged. ``beta_warmup: spread`` gates on the student's features instead (open
once their relative spread across the batch reaches `spread_tau`, i.e. once R's gradient no longer
blows up); on Fashion-MNIST's dev-set runs it was worse than the task gate at beta = 10
(benchmarks/beta_gate_dev.py). ``beta_warmup: N`` is a plain linear warm-up over N steps (0 =
constant beta, the paper's schedule).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def label_entropy(labels: np.ndarray | Any, num_classes: int) -> float:
    """Entropy (nats) of the empirical label distribution: the CE of a student that knows only the prior."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    p = counts[counts > 0] / max(1.0, counts.sum())
    return float(-(p * np.log(p)).sum())


GATES = ("auto", "loss", "spread")


@dataclass
class BetaSchedule:
    """Effective beta per optimizer step (see the module docstring).

    Args:
        beta: the configured weight.
        warmup: ``"auto"`` / ``"loss"`` (task-gated warm-up), ``"spread"`` (feature-gated) or a
            number of linear warm-up steps (0 = off).
        total_steps: steps of the run.
        chance_loss: task loss of a student at chance (`label_entropy` of the training labels).
        drop: relative drop below `chance_loss` that counts as "left chance".
        window: task losses averaged for that test.
        ramp_frac: fraction of `total_steps` over which beta ramps up once the gate opens.
        open_by: fraction of `total_steps` after which the gate opens regardless.
        spread_tau: relative feature spread that opens the ``spread`` gate.

    Example:
        >>> s = BetaSchedule(beta=10.0, warmup=4, total_steps=100, chance_loss=2.3)
        >>> [s.value(t) for t in range(6)]
        [0.0, 2.5, 5.0, 7.5, 10.0, 10.0]
    """

    beta: float
    warmup: str | int
    total_steps: int
    chance_loss: float = math.log(2.0)
    drop: float = 0.1
    window: int = 5
    ramp_frac: float = 0.1
    open_by: float = 0.3
    spread_tau: float = 0.2
    opened_at: int | None = None
    _recent: deque[float] = field(default_factory=deque, repr=False)

    @property
    def gated(self) -> bool:
        """True while the effective beta depends on the task loss (``auto``, gate still closed)."""
        return self.warmup in GATES and self.beta > 0 and self.opened_at is None

    @property
    def wants_spread(self) -> bool:
        """True while the gate needs the relative spread of each step's features (`collapse.feature_spread`)."""
        return self.gated and self.warmup == "spread"

    def observe(self, step: int, task_loss: float, spread: float | None = None) -> None:
        """Feed the task loss of `step` (the global-batch mean: identical on every rank) and, for the
        spread gate, the relative spread of the global batch's student features."""
        if not self.gated:
            return
        self._recent.append(float(task_loss))
        while len(self._recent) > self.window:
            self._recent.popleft()
        left_chance = (len(self._recent) == self.window
                       and sum(self._recent) / self.window < (1.0 - self.drop) * self.chance_loss)
        spread_ok = spread is not None and spread >= self.spread_tau
        rule = spread_ok if self.warmup == "spread" else left_chance  # auto = loss (measured better)
        if rule or step + 1 >= math.ceil(self.open_by * self.total_steps):
            self.opened_at = step + 1

    def value(self, step: int) -> float:
        """The weight of the regularizer at `step` (0-based)."""
        if self.beta == 0:
            return 0.0
        if self.warmup in GATES:
            if self.opened_at is None:
                return 0.0
            ramp = max(1, round(self.ramp_frac * self.total_steps))
            return self.beta * min(1.0, (step - self.opened_at + 1) / ramp)
        n = int(self.warmup)
        return self.beta if n <= 0 else self.beta * min(1.0, step / n)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (resume continues with the same gate)."""
        return {"opened_at": self.opened_at, "recent": list(self._recent)}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.opened_at = None if state.get("opened_at") is None else int(state["opened_at"])
        self._recent = deque(float(v) for v in state.get("recent", []))


__all__ = ["GATES", "BetaSchedule", "label_entropy"]

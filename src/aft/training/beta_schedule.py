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

``beta_rule: auto`` (``--beta auto``) needs no grid: when the warm-up starts (the gate opens, or at
step 0 for a numeric warm-up) beta is still held at 0 for `auto_steps` steps while the loop measures
the norms of the task's and the regularizer's gradients with respect to the student's parameters;
beta becomes ``scale * median(|grad CE| / |grad R|)`` (`scale` = ``beta_auto_scale``, 3 by
default: R pulls three times as hard as the task when it comes in; chosen on a dev set), clipped to [`AUTO_MIN`, `AUTO_MAX`], and the
schedule then ramps to it as usual. Its evaluation against cross-validated beta is in
docs/regularizers.md ("beta auto").
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
RULES = ("fixed", "auto")
AUTO_MIN, AUTO_MAX = 1e-3, 1e3  # the range a measured beta is clipped to


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
        rule: ``"fixed"`` (beta as given) or ``"auto"`` (beta measured from the gradient norms; `beta`
            is then the scale of the measured ratio).
        auto_steps: steps whose gradient-norm ratios give the automatic beta.

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
    rule: str = "fixed"
    auto_steps: int = 5
    opened_at: int | None = None
    resolved: float | None = None  # the automatic beta, once measured
    resolved_at: int | None = None
    _recent: deque[float] = field(default_factory=deque, repr=False)
    _ratios: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"beta rule must be one of {RULES}, got {self.rule!r}")

    @property
    def measuring(self) -> bool:
        """True while the loop must measure the gradient-norm ratio (``rule: auto``, warm-up started)."""
        if self.rule != "auto" or self.beta <= 0 or self.resolved is not None:
            return False
        return self.warmup not in GATES or self.opened_at is not None

    def observe_ratio(self, step: int, ratio: float) -> None:
        """Feed |grad task| / |grad R| of `step`; after `auto_steps` of them beta is fixed."""
        if not self.measuring:
            return
        if math.isfinite(ratio) and ratio > 0:
            self._ratios.append(float(ratio))
        if len(self._ratios) >= self.auto_steps or (not self._ratios and step >= self.total_steps - 1):
            median = float(np.median(self._ratios)) if self._ratios else 1.0
            self.resolved = min(AUTO_MAX, max(AUTO_MIN, self.beta * median))
            self.resolved_at = step + 1

    @property
    def target(self) -> float:
        """The beta the schedule ramps to (the measured one under ``rule: auto``; 0 until then)."""
        if self.rule == "auto":
            return self.resolved or 0.0
        return self.beta

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
        beta = self.target
        if beta == 0:
            return 0.0
        if self.warmup in GATES:
            if self.opened_at is None:
                return 0.0
            start = self.resolved_at if self.rule == "auto" else self.opened_at
            ramp = max(1, round(self.ramp_frac * self.total_steps))
            return beta * min(1.0, (step - start + 1) / ramp)  # type: ignore[operator]
        n = int(self.warmup)
        if self.rule == "auto":  # the warm-up starts once beta is measured
            return beta if n <= 0 else beta * min(1.0, (step - self.resolved_at + 1) / n)  # type: ignore[operator]
        return beta if n <= 0 else beta * min(1.0, step / n)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (resume continues with the same gate)."""
        return {"opened_at": self.opened_at, "recent": list(self._recent), "ratios": list(self._ratios),
                "resolved": self.resolved, "resolved_at": self.resolved_at}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.opened_at = None if state.get("opened_at") is None else int(state["opened_at"])
        self._recent = deque(float(v) for v in state.get("recent", []))
        self._ratios = [float(v) for v in state.get("ratios", [])]
        self.resolved = None if state.get("resolved") is None else float(state["resolved"])
        self.resolved_at = None if state.get("resolved_at") is None else int(state["resolved_at"])


__all__ = ["AUTO_MAX", "AUTO_MIN", "GATES", "RULES", "BetaSchedule", "label_entropy"]

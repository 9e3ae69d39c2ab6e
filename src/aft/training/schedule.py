"""Learning-rate schedule stepped per optimizer step (not per epoch): linear warmup then cosine."""

from __future__ import annotations

import math


def lr_factor(step: int, total_steps: int, warmup_steps: int = 0, schedule: str = "cosine") -> float:
    """Multiplier of the base learning rate for the update at 0-based optimizer `step`.

    Warmup: ``(step + 1) / warmup_steps`` for ``step < warmup_steps``. Cosine afterwards:
    ``0.5 * (1 + cos(pi * t))`` with ``t = (step - warmup) / (total - warmup)``, reaching 0 at the
    end. ``constant`` keeps 1 after warmup.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, max(0.0, (step - warmup_steps) / span))
    return 0.5 * (1.0 + math.cos(math.pi * t))


class ScheduleFn:
    """Picklable-free callable for ``torch.optim.lr_scheduler.LambdaLR``."""

    def __init__(self, total_steps: int, warmup_steps: int, schedule: str) -> None:
        self.total_steps, self.warmup_steps, self.schedule = total_steps, warmup_steps, schedule

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total_steps, self.warmup_steps, self.schedule)

"""Detect a run that never learnt: task loss at chance, or one predicted class for every input.

A transfer regularizer that is too strong for its student (docs/regularizers.md) can hold the
student at chance for the whole run while its training still "succeeds". The trainer runs this
check at the end of every run, logs a warning, and writes the verdict into result.json (and the
comparison records carry it as a flag), so a useless model is never reported silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

#: a run "left chance" once its task loss fell this far below the label entropy
CHANCE_MARGIN = 0.05
#: share of the inputs given the most frequent predicted class above which predictions are constant
CONSTANT_SHARE = 0.95


@dataclass(frozen=True)
class CollapseReport:
    """The verdict of `check_collapse` (all fields JSON-serializable).

    Attributes:
        collapsed: True when the run never learnt (see `reason`).
        reason: one line for the log and the report ("" when not collapsed).
        chance_loss: entropy of the training labels (nats): the task loss of a student at chance.
        final_task_loss: mean training task loss over the last logged steps.
        prediction_share: share of the checked inputs given the most frequent predicted class.
        majority_rate: share of the checked inputs in their most frequent true class.
        accuracy: accuracy on the checked inputs.
        feature_spread: mean ||phi_i - mean(phi)|| / mean ||phi_i|| on the checked inputs.
        dead_features: share of feature dimensions that are constant across the checked inputs.
        checked_on: which inputs were checked ("validation" or "training").
    """

    collapsed: bool
    reason: str
    chance_loss: float
    final_task_loss: float | None
    prediction_share: float
    majority_rate: float
    accuracy: float
    feature_spread: float
    dead_features: float
    checked_on: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def feature_spread(phi: torch.Tensor) -> float:
    """Mean distance of the rows from their mean, relative to the mean row norm (scale-free)."""
    phi = phi.detach().double()
    centred = (phi - phi.mean(0, keepdim=True)).norm(dim=1).mean()
    return float(centred / phi.norm(dim=1).mean().clamp_min(1e-30))


def final_task_loss(history: list[dict[str, Any]], total_steps: int, tail: float = 0.1) -> float | None:
    """Mean logged task loss over the last `tail` of the steps (at least the last record)."""
    logged = [(int(r["step"]), float(r["task_loss"])) for r in history if "task_loss" in r]
    if not logged:
        return None
    start = total_steps - max(1, int(tail * total_steps))
    values = [v for s, v in logged if s > start] or [logged[-1][1]]
    return float(np.mean(values))


@torch.no_grad()
def check_collapse(student: nn.Module, x: torch.Tensor, y: torch.Tensor, chance_loss: float,
                   history: list[dict[str, Any]], total_steps: int, checked_on: str,
                   device: torch.device, batch_size: int = 512, max_inputs: int = 2048) -> CollapseReport:
    """Check a trained student for collapse on (at most `max_inputs` of) `x`, `y`.

    Collapsed means: the training task loss at the end is still within `CHANCE_MARGIN` of the
    label entropy, or (with at least 20 inputs checked) the student gives one class to more than
    `CONSTANT_SHARE` of them while that class is not as frequent in the labels.
    """
    was = student.training
    student.eval()
    n = min(len(x), max_inputs)
    y = y[:n]  # x is read per batch: lazy inputs are never all read (and preprocessed) at once
    preds, feats = [], []
    for s in range(0, n, batch_size):
        logits, phi = student(x[s : min(s + batch_size, n)].to(device))
        preds.append(logits.float().argmax(1).cpu())
        feats.append(phi.float().cpu())
    student.train(was)
    pred = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
    phi = torch.cat(feats) if feats else torch.empty(0, 1)
    n = max(1, len(pred))
    share = float(torch.bincount(pred).max()) / n if len(pred) else 0.0
    majority = float(torch.bincount(y).max()) / n if len(y) else 0.0
    accuracy = float((pred == y).float().mean()) if len(y) else 0.0
    spread = feature_spread(phi) if len(phi) > 1 else 0.0
    dead = float((phi.std(0) <= 1e-12).float().mean()) if len(phi) > 1 else 0.0
    task_end = final_task_loss(history, total_steps)
    reasons = []
    if task_end is not None and chance_loss > 0 and task_end >= (1.0 - CHANCE_MARGIN) * chance_loss:
        reasons.append(f"the task loss never left chance ({task_end:.3f} vs label entropy {chance_loss:.3f})")
    if len(pred) >= 20 and share >= CONSTANT_SHARE and share > majority + 0.05:
        reasons.append(f"one class is predicted for {100 * share:.0f}% of the {checked_on} inputs")
    reason = "; ".join(reasons)
    if reason:
        reason += (f" (feature spread {spread:.3g}, {100 * dead:.0f}% of feature dims constant): the regularizer "
                   "weight is likely too large for this student; lower beta, or keep beta_warmup: auto")
    return CollapseReport(collapsed=bool(reasons), reason=reason, chance_loss=float(chance_loss),
                          final_task_loss=task_end, prediction_share=share, majority_rate=majority,
                          accuracy=accuracy, feature_spread=spread, dead_features=dead, checked_on=checked_on)


__all__ = ["CollapseReport", "check_collapse", "feature_spread", "final_task_loss"]

"""What a comparison run keeps for the report besides its accuracies: the learning curve, the test
confusion matrix and the sorted-ρ profile per teacher (small, JSON-ready, written by the executor).

* `curve_points`: every evaluation point plus at most `max_train_points` evenly spaced training-log
  points, each with the total loss, the task loss, the regularizer term R and the β in effect.
* `confusion_matrix`: counts[true][predicted] of a student on a split (per-class accuracy follows).
* `rho_profile`: per teacher, its feature weights sorted in decreasing order, sampled at a fixed
  number of evenly spaced ranks (a curve comparable across teachers of any width).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

#: curve keys copied from a training-history record (history key -> curve key)
CURVE_KEYS = {"loss": "loss", "task_loss": "task_loss", "reg_loss": "reg_loss", "beta": "beta",
              "val_accuracy": "val_acc", "val_loss": "val_loss"}
#: kept exactly: cross-validation chooses the stopping step and compares the betas from them
EXACT_KEYS = ("val_acc", "val_loss")
#: the confusion matrix is kept only up to this many classes (a 100-class matrix would bloat every record)
MAX_CONFUSION_CLASSES = 50
RHO_PROFILE_POINTS = 32


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def curve_points(history: Sequence[dict[str, Any]], max_train_points: int = 30) -> list[dict[str, float]]:
    """The run's curve: all evaluation points and <= `max_train_points` training-log points, by step.

    A point has ``step`` and whichever of ``loss``, ``task_loss``, ``reg_loss``, ``beta``, ``val_acc``
    the history record holds (no key rather than NaN for what was not measured at that step). The
    training losses and beta are kept to 4 significant digits (they are drawn, never compared);
    ``val_acc`` and ``val_loss`` (the validation cross-entropy) are kept exactly (cross-validation
    picks the stopping step and compares the betas from them).
    """
    evals = [h for h in history if "val_accuracy" in h and "step" in h]
    logs = [h for h in history if "val_accuracy" not in h and "step" in h and "loss" in h]
    if max_train_points <= 0:
        logs = []
    elif len(logs) > max_train_points:
        stride = len(logs) / max_train_points
        logs = [logs[min(len(logs) - 1, int(round((i + 1) * stride)) - 1)] for i in range(max_train_points)]
    out = []
    for h in sorted([*evals, *logs], key=lambda h: float(h["step"])):
        p: dict[str, float] = {"step": float(h["step"])}
        for src, dst in CURVE_KEYS.items():
            v = _finite(h.get(src))
            if v is not None:
                p[dst] = v if dst in EXACT_KEYS else float(f"{v:.4g}")
        out.append(p)
    return out


@torch.no_grad()
def confusion_matrix(student: torch.nn.Module, inputs: Any, labels: Sequence[int], num_classes: int,
                     batch_size: int = 256) -> list[list[int]] | None:
    """counts[true][predicted] of `student` (eval mode) on `inputs`; None above `MAX_CONFUSION_CLASSES`."""
    if num_classes > MAX_CONFUSION_CLASSES or len(labels) == 0:
        return None
    device = next(student.parameters()).device
    was = student.training
    student.eval()
    counts = torch.zeros(num_classes, num_classes, dtype=torch.long)
    y = torch.as_tensor(labels, dtype=torch.long)
    for s in range(0, len(y), batch_size):
        x = student.preprocess(inputs[s : s + batch_size])  # type: ignore[operator]
        logits, _ = student(x.to(device))
        pred = logits.float().argmax(1).cpu()
        counts += torch.bincount(y[s : s + batch_size] * num_classes + pred,
                                 minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    student.train(was)
    return counts.tolist()


def rho_profile(importance: torch.Tensor | None, column_ranges: dict[str, tuple[int, int]],
                points: int = RHO_PROFILE_POINTS) -> dict[str, list[float]]:
    """Per teacher, its weights sorted high -> low at `points` evenly spaced ranks (all when fewer), to 4
    significant digits."""
    if importance is None or importance.numel() == 0:
        return {}
    rho = importance.detach().float().cpu().flatten()
    out = {}
    for name, (a, b) in (column_ranges or {"teacher": (0, rho.numel())}).items():
        part = rho[a:b]
        if part.numel() == 0 or b > rho.numel():
            continue
        srt = torch.sort(part, descending=True).values
        n = srt.numel()
        idx = range(n) if n <= points else [round(i * (n - 1) / (points - 1)) for i in range(points)]
        out[name] = [float(f"{float(srt[i]):.4g}") for i in idx]  # drawn, never compared: 4 digits
    return out

"""`btune`: B-Tuning (Zhong et al. 2021): regress a student head onto LogME-weighted teacher predictions.

Design (how the per-sample target is found). `prepare` runs LogME (`aft.regularizers.logme`) on
each teacher's block of training features (split by ``PrepareContext.column_ranges``; one block if
empty), weights teachers by w = softmax(scores / temperature) and stores the stacked matrix

    target_weights = [w_1 M_1; w_2 M_2; ...]     (d_psi x C, M_t = teacher t's posterior means)

so that for any example the B-Tuning target sum_t w_t psi_t(x) M_t is simply psi(x) @ target_weights.
The target is therefore computed from the teacher features of the batch that the trainer passes
anyway: no per-sample lookup, no extra data path, and it stays correct for augmented views whose
cached features differ per view. The student side is a linear head on phi (d_phi -> C, the
"student's LogME head", learned jointly with the student's lr and weight decay). Loss = mean over
batch and classes of (head(phi) - psi @ target_weights)^2.

The trainer must: build, call ``prepare(PrepareContext(train_teacher_features, train_labels,
num_classes, column_ranges))`` BEFORE ``param_groups`` (the head is sized by num_classes) and
before building the optimizer (on resume, ``load_state_dict`` of a prepared state also sizes the
head, so prepare may be skipped then); then call ``reg(phi, psi)`` as for any method (no labels).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aft.errors import ConfigError
from aft.regularizers.base import REGULARIZERS, PrepareContext, Regularizer
from aft.regularizers.inputs import validate_pair
from aft.regularizers.logme import logme_evidence


@REGULARIZERS.register("btune")
class BTuning(Regularizer):
    """B-Tuning with our own LogME.

    Args:
        temperature: softmax temperature over teacher LogME scores (0.1 in the paper).
        num_classes: size the head at construction (otherwise `prepare` does).
        check_finite: raise on NaN/Inf inputs.

    Buffers after `prepare`: ``teacher_scores`` (T,), ``teacher_weights`` (T,), ``target_weights``
    (d_psi, C); ``teacher_names`` lists the teachers in that order.
    """

    name = "btune"
    needs_prepare = True

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        temperature: float = 0.1,
        num_classes: int | None = None,
        check_finite: bool = True,
    ) -> None:
        super().__init__(student_dim, teacher_dim)
        self.temperature = float(temperature)
        self.check_finite = check_finite
        self.teacher_names: list[str] = []
        self.head: nn.Linear | None = None
        self.register_buffer("teacher_scores", torch.zeros(0))
        self.register_buffer("teacher_weights", torch.zeros(0))
        self.register_buffer("target_weights", torch.zeros(0))
        if num_classes is not None:
            self._build(int(num_classes))

    def _build(self, num_classes: int) -> None:
        if self.head is None or self.head.out_features != num_classes:
            self.head = nn.Linear(self.student_dim, num_classes, device=self.teacher_scores.device)

    def prepare(self, context: PrepareContext) -> None:
        """Score each teacher with LogME, weight them, and store the stacked target map."""
        feats = context.teacher_features
        if feats.ndim != 2 or feats.shape[1] != self.teacher_dim:
            raise ConfigError(f"btune was built for teacher_dim={self.teacher_dim} but prepare got features of shape {tuple(feats.shape)}")
        ranges = dict(context.column_ranges) or {"teacher": (0, self.teacher_dim)}
        names = list(ranges)
        results = [logme_evidence(feats[:, a:b], context.labels, context.num_classes) for a, b in ranges.values()]
        scores = torch.tensor([r.score for r in results], dtype=torch.float64)
        weights = torch.softmax(scores / self.temperature, dim=0)
        target = torch.zeros(self.teacher_dim, context.num_classes, dtype=torch.float64)
        for w, r, (a, b) in zip(weights, results, ranges.values(), strict=True):
            target[a:b] += w * r.weights.cpu()
        device = self.teacher_scores.device
        self.teacher_names = names
        self.teacher_scores = scores.to(device=device, dtype=torch.float32)
        self.teacher_weights = weights.to(device=device, dtype=torch.float32)
        self.target_weights = target.to(device=device, dtype=torch.float32)
        self._build(context.num_classes)

    def target(self, teacher_features: torch.Tensor) -> torch.Tensor:
        """The B-Tuning target for a batch: sum_t w_t * (teacher t's LogME prediction), ``(B, C)``."""
        return teacher_features @ self.target_weights.to(teacher_features.dtype)

    def loss_term(self, student_features: torch.Tensor, teacher_features: torch.Tensor, labels: Any = None) -> torch.Tensor:
        if self.head is None or self.target_weights.numel() == 0:
            raise ConfigError("btune needs prepare(context) on the training features before training; the trainer calls it when reg.needs_prepare")
        phi, psi = validate_pair(student_features, teacher_features, self.student_dim, self.teacher_dim, self.check_finite)
        assert psi is not None
        pred = phi @ self.head.weight.to(phi.dtype).T + self.head.bias.to(phi.dtype)
        return (pred - self.target(psi.detach())).square().mean()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # buffers are sized by prepare; accept a prepared checkpoint into a fresh module
        for key in ("teacher_scores", "teacher_weights", "target_weights"):
            if prefix + key in state_dict:
                setattr(self, key, torch.empty_like(state_dict[prefix + key], device=getattr(self, key).device))
        weight = state_dict.get(prefix + "head.weight")
        if weight is not None:
            self._build(int(weight.shape[0]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

"""The `Regularizer` interface every transfer method implements, and the method registry.

A regularizer is an ``nn.Module`` called as ``reg(student_features, teacher_features)``; it
returns the loss term as a scalar tensor, so a user's own loop can write
``loss = task_loss + beta * reg(phi, psi)``. ``reg.compute(...)`` returns the same loss together
with named float metrics for logging. Its own learnable parameters (AFT's scales, KD's projection,
FT's translator) live on the module; ``param_groups`` says which learning rate and weight decay
each group should get.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from aft.errors import ConfigError
from aft.registry import Registry


@dataclass
class RegularizerOutput:
    """The loss term of one call and named float metrics for logging."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class PrepareContext:
    """Training-set information some methods need once, before training starts.

    Attributes:
        teacher_features: teacher features of the whole training split, float32 ``(N, d_psi)``.
        labels: int64 labels ``(N,)``.
        num_classes: number of classes.
        column_ranges: per teacher, its ``(start, end)`` columns in ``teacher_features``.
    """

    teacher_features: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    column_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)


class Regularizer(nn.Module):
    """Base class of transfer regularizers.

    Subclasses implement `compute`. Constructor signature for every method:
    ``Method(student_dim, teacher_dim, **options)``.

    Args:
        student_dim: dimension of the student features phi.
        teacher_dim: dimension of the (concatenated) teacher features psi.
    """

    name: ClassVar[str] = "base"
    #: methods that read teacher features; `none` (STL) does not
    uses_teacher: ClassVar[bool] = True
    #: methods whose `prepare` must run before training (FT's paraphraser, B-Tuning's LogME)
    needs_prepare: ClassVar[bool] = False
    #: methods whose `compute` needs the labels of the batch
    needs_labels: ClassVar[bool] = False

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.student_dim = int(student_dim)
        self.teacher_dim = int(teacher_dim)

    def compute(
        self,
        student_features: torch.Tensor,
        teacher_features: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> RegularizerOutput:
        """Return the loss term and metrics for one batch.

        The default calls `loss_term` and then `metrics` (metrics read values back to the host, so
        `forward`, which skips them, is the cheaper call inside a training step).
        """
        if type(self).loss_term is Regularizer.loss_term:
            raise NotImplementedError(f"{type(self).__name__} implements neither compute nor loss_term")
        loss = self.loss_term(student_features, teacher_features, labels)
        return RegularizerOutput(loss, self.metrics(loss))

    def loss_term(
        self,
        student_features: torch.Tensor,
        teacher_features: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss term alone (no metrics); subclasses override this or `compute`."""
        if type(self).compute is Regularizer.compute:
            raise NotImplementedError(f"{type(self).__name__} implements neither compute nor loss_term")
        return self.compute(student_features, teacher_features, labels).loss

    def metrics(self, loss: torch.Tensor) -> dict[str, float]:
        """Named float metrics after a call whose loss term was `loss` (default: the loss value)."""
        return {"loss": float(loss.detach())}

    def forward(
        self,
        student_features: torch.Tensor,
        teacher_features: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss term (a scalar tensor) for one batch."""
        return self.loss_term(student_features, teacher_features, labels)

    def prepare(self, context: PrepareContext) -> None:  # noqa: B027 - optional hook
        """One-time preparation on the training set (no-op unless `needs_prepare`)."""

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups for this module's own trainable parameters.

        Args:
            lr: the student's learning rate (methods may use their own, e.g. AFT's ``prior_lr``).
            weight_decay: the student's weight decay.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "weight_decay": weight_decay, "name": self.name}] if params else []

    def importance(self) -> torch.Tensor | None:
        """Per-teacher-feature weights learned by the method (AFT's rho), or None."""
        return None


REGULARIZERS: Registry[type[Regularizer]] = Registry("method")


def build(name: str, student_dim: int, teacher_dim: int, **options: Any) -> Regularizer:
    """Build the regularizer registered as `name`.

    Example:
        >>> import torch
        >>> from aft import regularizers
        >>> reg = regularizers.build("aft", student_dim=8, teacher_dim=16)
        >>> loss = reg(torch.randn(4, 8), torch.randn(4, 16))
        >>> loss.shape
        torch.Size([])
    """
    cls = REGULARIZERS.get(name)
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = [n for n in params if n not in ("self", "student_dim", "teacher_dim")]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(
                f"method {name!r} has no option(s) {', '.join(unknown)}; valid options: {', '.join(accepted) or '(none)'}"
            )
    return cls(student_dim, teacher_dim, **options)

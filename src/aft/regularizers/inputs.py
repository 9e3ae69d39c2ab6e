"""Input validation shared by every regularizer: shapes, finiteness and the compute dtype."""

from __future__ import annotations

import torch

from aft.errors import ConfigError, NonFiniteError


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half/bfloat16 inputs are upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def check_finite(check: bool, **tensors: torch.Tensor) -> None:
    """Raise `NonFiniteError` naming the tensor if any holds NaN or Inf.

    One fused reduction and one host read per call, so it is cheap enough to run every step.
    """
    if not check:
        return
    values = list(tensors.values())
    ok = torch.stack([torch.isfinite(t).all() for t in values]).all()
    if bool(ok):
        return
    bad = [name for name, t in tensors.items() if not bool(torch.isfinite(t).all())]
    raise NonFiniteError(
        f"{', '.join(bad)} contain NaN or Inf; check the model/feature store for overflow "
        "(lower the learning rate or use float32 features) before the regularizer's parameters are poisoned"
    )


def check_finite_output(output: torch.Tensor, check: bool, **inputs: torch.Tensor) -> torch.Tensor:
    """Return `output`; raise `NonFiniteError` if it is NaN or Inf, naming the inputs at fault.

    For losses that reach every input through a batch mean (the kernel methods center each
    column), any NaN/Inf input makes the output NaN, so checking the scalar output is the input
    check at the cost of one scalar read instead of a pass over B x (d_phi + d_psi) values.
    """
    if not check or bool(torch.isfinite(output).all()):
        return output
    check_finite(True, **inputs)
    raise NonFiniteError(
        "the regularizer's loss is NaN or Inf although its inputs are finite; its parameters have "
        "diverged: lower prior_lr / the learning rate or use float32 features"
    )


def validate_pair(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor | None,
    student_dim: int,
    teacher_dim: int,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check shapes and finiteness; return both inputs cast to the compute dtype.

    Args:
        student_features: ``(B, student_dim)``.
        teacher_features: ``(B, teacher_dim)`` or None for methods that do not read it.
        check: run the NaN/Inf check.

    Raises:
        ConfigError: wrong rank, dimension or mismatched batch sizes.
        NonFiniteError: NaN or Inf in an input.
    """
    phi, psi = student_features, teacher_features
    if phi.ndim != 2 or phi.shape[1] != student_dim:
        raise ConfigError(
            f"student features must have shape (batch, {student_dim}), got {tuple(phi.shape)}; "
            "pass the penultimate features or rebuild the regularizer with the right student_dim"
        )
    if phi.shape[0] == 0:
        raise ConfigError("empty batch of student features; batches need at least one example")
    tensors = {"student features": phi}
    if psi is not None:
        if psi.ndim != 2 or psi.shape[1] != teacher_dim:
            raise ConfigError(
                f"teacher features must have shape (batch, {teacher_dim}), got {tuple(psi.shape)}; "
                "rebuild the regularizer with the feature store's teacher_dim"
            )
        if psi.shape[0] != phi.shape[0]:
            raise ConfigError(
                f"student batch ({phi.shape[0]}) and teacher batch ({psi.shape[0]}) differ; "
                "pass the teacher features of the same examples"
            )
        tensors["teacher features"] = psi
    check_finite(check, **tensors)
    dtype = compute_dtype(*tensors.values())
    return phi.to(dtype), (psi.to(dtype) if psi is not None else None)

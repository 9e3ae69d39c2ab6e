"""The pieces the training loop assembles: device, per-epoch order, regularizer construction,
student inputs (preprocessed, lazy or augmented), the evaluator, and small tensor helpers."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aft.augment.views import AugmentationPolicy
from aft.data.split import DatasetSplit
from aft.errors import AftError, ConfigError
from aft.regularizers.base import Regularizer
from aft.students.base import Student
from aft.training import distributed as D
from aft.training.config import TrainConfig
from aft.training.data import LazyStudentInputs

logger = logging.getLogger("aft.training.loop")  # the loop's logger: messages keep their source name


def resolve_device(name: str, info: D.DistInfo | None = None) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; CUDA ranks use their local GPU."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but CUDA is not available; use --device cpu or auto")
        return torch.device("cuda", info.local_rank if info else 0)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' requested but MPS is not available; use --device cpu or auto")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0..."
                              f"{torch.cuda.device_count() - 1}")
    elif device.type not in ("cpu", "mps", "meta"):
        raise ConfigError(f"device {name!r} is not supported; use cpu, cuda, cuda:N, mps or auto")
    return device


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of `epoch`: a pure function of ``(seed, epoch)`` (so resume needs no RNG state)."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**63 - 1))
    return torch.randperm(n, generator=g)


def rho_summary(importance: torch.Tensor | None, column_ranges: dict[str, tuple[int, int]]) -> dict[str, dict[str, float]] | None:
    """Per teacher: mean/min/max of rho and its share of the total weight."""
    if importance is None or importance.numel() == 0:
        return None
    rho = importance.detach().float().cpu().flatten()
    ranges = column_ranges or {"teacher": (0, rho.numel())}
    total = float(rho.sum()) or 1.0
    out = {}
    for name, (a, b) in ranges.items():
        part = rho[a:b]
        if part.numel() == 0 or b > rho.numel():
            continue
        out[name] = {"mean": float(part.mean()), "min": float(part.min()), "max": float(part.max()),
                     "share": float(part.sum()) / total, "dims": int(part.numel())}
    return out or None


def _method_kwargs(cls: type[Regularizer], cfg: TrainConfig, column_ranges: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    opts = dict(cfg.method_options)
    params = inspect.signature(cls.__init__).parameters
    if "prior_lr" in params:
        opts.setdefault("prior_lr", cfg.prior_lr)
    if "blocks" in params and column_ranges:  # the teacher blocks (teachers / layers / fields) of the store
        opts.setdefault("blocks", dict(column_ranges))
    return opts


def _check_method_options(cls: type[Regularizer], cfg: TrainConfig) -> None:
    """Refuse ``method_options`` keys the method's constructor does not take (before anything runs)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = sorted(k for k, p in params.items() if k not in ("self", "student_dim", "teacher_dim")
                   and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))
    unknown = sorted(set(cfg.method_options) - set(valid))
    if unknown:
        raise ConfigError(f"method {cfg.method!r} has no option {unknown[0]!r}; valid method_options: "
                          f"{', '.join(valid) or 'none'}")


def _build_regularizer(cls: type[Regularizer], student_dim: int, teacher_dim: int, cfg: TrainConfig,
                       column_ranges: dict[str, tuple[int, int]] | None = None) -> Regularizer:
    """The method's regularizer; an unknown or ill-typed ``method_options`` key is a one-line `ConfigError`."""
    _check_method_options(cls, cfg)
    kwargs = _method_kwargs(cls, cfg, column_ranges)
    try:
        return cls(student_dim, teacher_dim, **kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, AftError):
            raise
        raise ConfigError(f"method {cfg.method!r}: bad method_options {sorted(cfg.method_options)} "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


class _Evaluator:
    """Accuracy and mean CE of a student on a preprocessed split (sharded over ranks, summed)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
                 autocast: Callable[[], Any], info: D.DistInfo) -> None:
        self.x, self.y, self.bs, self.device, self.autocast, self.info = x, y, batch_size, device, autocast, info

    @torch.no_grad()
    def __call__(self, student: nn.Module) -> tuple[float, float]:
        was = student.training
        student.eval()
        correct, loss_sum = 0.0, 0.0
        idx = torch.arange(self.info.rank, len(self.y), self.info.world_size)
        for s in range(0, len(idx), self.bs):
            b = idx[s : s + self.bs]
            with self.autocast():
                logits, _ = student(self.x[b].to(self.device))
            logits = logits.float()
            yb = self.y[b].to(self.device)
            correct += float((logits.argmax(1) == yb).sum())
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        student.train(was)
        correct, loss_sum = D.all_reduce_sum([correct, loss_sum], self.info, self.device)
        n = max(1, len(self.y))
        return correct / n, loss_sum / n


def _augmented_inputs(student: Student, split: DatasetSplit, policy: AugmentationPolicy, idx: np.ndarray,
                      views: np.ndarray) -> torch.Tensor:
    """Student inputs of samples `idx`, each augmented as view ``views[i]`` and preprocessed."""
    return student.preprocess(policy.apply(split.take(idx), [split.ids[int(i)] for i in idx], views))


def _check_feature_views(features: Any, num_views: int, policy_config: dict[str, Any]) -> None:
    """Features must hold >= `num_views` views; stores must have been made with the same policy."""
    have = int(getattr(features, "num_views", 1))
    if have < num_views:
        raise ConfigError(f"views: {num_views} but the teacher features hold {have} view(s); extract them with "
                          f"`aft extract --views {num_views}` (or lower views)")
    from aft.features.store import FeatureStore, _jsonable

    stores = list(getattr(features, "sources", {}).values()) or [features]
    for store in stores:
        if isinstance(store, FeatureStore) and store.manifest.get("augmentation") != _jsonable(policy_config):
            store.verify_views(store.num_views, policy_config)  # raises, naming the field


def _preprocess(student: Student, split: DatasetSplit, chunk: int = 4096) -> torch.Tensor | LazyStudentInputs:
    if split.is_lazy:  # read and preprocessed per batch (aft.data.lazy), never the whole split at once
        return LazyStudentInputs(student, split)
    parts = [student.preprocess(split.inputs[i : i + chunk]) for i in range(0, len(split), chunk)]
    return torch.cat(parts, dim=0) if parts else torch.empty(0)


def _grad_norm(value: torch.Tensor, params: list[torch.Tensor]) -> float:
    """L2 norm of d value / d params (graph kept for the step's own backward; unused params count 0)."""
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None) or torch.zeros(())))


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}

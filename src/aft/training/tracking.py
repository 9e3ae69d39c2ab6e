"""Experiment tracking through the ecosystem's own libraries: TensorBoard, Weights & Biases, MLflow.

Every run writes ``metrics.jsonl``; trackers get the same numeric records. TensorBoard is on by
default (``tensorboard: true``) *when its package is installed* (``pip install 'aft[tensorboard]'``,
part of ``aft[all]``); without it one info line says it was skipped. ``report_to: [tensorboard,
wandb, mlflow]`` asks for trackers explicitly: a missing package is then a one-line error, raised
before training starts. wandb reads its usual environment (``WANDB_PROJECT``, ``WANDB_MODE=offline``);
MLflow its tracking URI (``MLFLOW_TRACKING_URI``, default ``./mlruns``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from aft.registry import Registry

logger = logging.getLogger(__name__)


class Tracker(Protocol):
    """What the training loop calls: `log` numeric metrics at a step, `close` at the end."""

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class _TensorBoard:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "aft"), name=run_dir.name, dir=str(run_dir),
                              config=config, reinit=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        import mlflow

        self.mlflow = mlflow
        self.run = mlflow.start_run(run_name=run_dir.name)
        flat = {k: str(v)[:250] for k, v in config.items() if v not in (None, [], {})}
        mlflow.log_params(flat)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


#: tracker name -> (module that must be importable, factory(run_dir, config))
TRACKERS: Registry[tuple[str, Callable[[Path, dict[str, Any]], Tracker]]] = Registry("tracker")
TRACKERS.add("tensorboard", ("tensorboard", _TensorBoard))
TRACKERS.add("wandb", ("wandb", _Wandb))
TRACKERS.add("mlflow", ("mlflow", _MLflow))


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_trackers(report_to: list[str]) -> None:
    """Raise the one-line install hint now for a requested tracker whose package is missing."""
    from aft.cli.extras import missing_extra

    for name in report_to:
        module, _ = TRACKERS.get(name)
        if not _available(module):
            raise missing_extra(ModuleNotFoundError(f"No module named {module!r}", name=module))  # type: ignore[misc]


def open_trackers(run_dir: Path | None, config: dict[str, Any], report_to: list[str],
                  tensorboard_default: bool) -> list[Tracker]:
    """The run's trackers: those in `report_to` (their packages must be installed, see
    `check_trackers`), plus TensorBoard when `tensorboard_default` and its package is present."""
    if run_dir is None:
        if report_to:
            logger.warning("report_to %s ignored: the run has no output folder", report_to)
        return []
    names = list(dict.fromkeys(report_to))
    check_trackers(names)
    trackers: list[Tracker] = [TRACKERS.get(name)[1](run_dir, config) for name in names]
    if tensorboard_default and "tensorboard" not in names:
        if not _available("tensorboard"):
            logger.info("TensorBoard logging skipped: the tensorboard package is not installed "
                        "(pip install 'aft[tensorboard]'); metrics are in metrics.jsonl")
        else:
            try:
                trackers.append(_TensorBoard(run_dir, config))
            except ImportError as exc:  # installed but broken (a missing dependency of its own)
                logger.warning("TensorBoard logging skipped: %s; reinstall with pip install 'aft[tensorboard]'", exc)
    return trackers


def log_all(trackers: list[Tracker], record: dict[str, Any], step: int) -> None:
    """Send the numeric entries of one metrics record (not ``step``) to every tracker."""
    if not trackers:
        return
    metrics = {k: float(v) for k, v in record.items()
               if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for t in trackers:
        t.log(metrics, step)


def close_all(trackers: list[Tracker]) -> None:
    for t in trackers:
        t.close()

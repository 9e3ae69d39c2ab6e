"""Training: the one loop for every method, its config, checkpoints and data-parallel helpers.

Example:
    >>> from aft.training import TrainConfig, train, load_student  # doctest: +SKIP
    >>> result = train(TrainConfig(dataset="digits", method="none", steps=100, output="runs/x"))
    >>> student = load_student("runs/x")
"""

from aft.training.atomic import atomic_write_bytes, atomic_write_json
from aft.training.config import TrainConfig, load_config
from aft.training.schedule import lr_factor
from aft.students.io import load_student, save_student  # noqa: E402,I001 - needs atomic first
from aft.training.loop import TrainResult, epoch_permutation, resolve_device, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "atomic_write_bytes",
    "atomic_write_json",
    "epoch_permutation",
    "load_config",
    "load_student",
    "lr_factor",
    "resolve_device",
    "save_student",
    "train",
]

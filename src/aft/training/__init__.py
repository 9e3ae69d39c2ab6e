"""Training: the one loop for every method, its config, checkpoints and data-parallel helpers.

Example:
    >>> from aft.training import TrainConfig, train, load_student  # doctest: +SKIP
    >>> result = train(TrainConfig(dataset="digits", method="none", steps=100, output="runs/x"))
    >>> student = load_student("runs/x")
"""

from aft.students.io import load_student, save_student
from aft.training.atomic import atomic_write_bytes, atomic_write_json
from aft.training.config import TrainConfig, load_config
from aft.training.loop import TrainResult, epoch_permutation, preflight, resolve_device, train
from aft.training.schedule import lr_factor

__all__ = [
    "TrainConfig",
    "TrainResult",
    "atomic_write_bytes",
    "atomic_write_json",
    "epoch_permutation",
    "load_config",
    "load_student",
    "lr_factor",
    "preflight",
    "resolve_device",
    "save_student",
    "train",
]

"""The fields of ``student.json`` that rebuilding a student relies on, checked before they are used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aft.errors import CheckpointError


def _int_at_least(minimum: int) -> Any:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


#: field -> (required, check, what it must be)
FIELDS: dict[str, tuple[bool, Any, str]] = {
    "name": (True, lambda v: isinstance(v, str) and bool(v), "a student name"),
    "num_classes": (True, _int_at_least(1), "an integer >= 1"),
    "options": (False, lambda v: v is None or isinstance(v, dict), "a mapping"),
    "class_names": (False, lambda v: v is None or (isinstance(v, list) and all(isinstance(n, str) for n in v)),
                    "a list of names"),
    "feature_dim": (False, lambda v: v is None or _int_at_least(1)(v), "an integer >= 1"),
}


def check_student_json(cfg: Any, path: str | Path) -> None:
    """Raise a one-line `CheckpointError` naming the first missing or ill-typed field of ``student.json``."""
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(cfg).__name__}; retrain the student")
    for key, (required, ok, what) in FIELDS.items():
        if key not in cfg:
            if required:
                raise CheckpointError(f"{path} has no field {key!r}; the saved student is incomplete: retrain it")
            continue
        if not ok(cfg[key]):
            shown = repr(cfg[key]) if len(repr(cfg[key])) <= 60 else repr(cfg[key])[:57] + "..."
            raise CheckpointError(f"{path}: field {key!r} is {shown}, expected {what}; retrain the student")


__all__ = ["check_student_json"]

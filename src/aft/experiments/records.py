"""`RunRecord`: one JSON line per finished run of a comparison, the raw material of every report.

Records are appended to a JSON-lines file; a run is identified by its `key` so an interrupted
comparison can skip the runs it already has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from aft.errors import DataError


def run_key(run: Any) -> str:
    """Identity of a run (a `RunRecord` or a grid job): everything that defines it, nothing it measured."""
    teachers = "+".join(run.teachers) or "-"
    return (
        f"{run.suite}|{run.dataset}|{run.student}|{teachers}|{run.method}|beta={run.beta:g}|"
        f"n={run.train_size}|seed={run.seed}|views={run.views}|{run.phase}"
    ) + (f"|cfg={run.config}" if run.config else "")


#: phases of a run: `select` runs are scored on validation only; `final` runs are also evaluated on test once
PHASES = ("select", "final")


@dataclass
class RunRecord:
    """The outcome of one training run (or one linear probe) in a comparison.

    Attributes:
        suite: suite name (e.g. ``"fashion-mnist"``).
        dataset: dataset name.
        student: student name (``"probe"`` for the teacher linear probe).
        teachers: teacher names (concatenated in this order); empty for STL.
        method: regularizer name (``"none"`` = STL, ``"probe"`` = linear probe on teacher features).
        beta: regularization weight (0 for STL and probe).
        train_size: number of labeled training samples (before the validation carve-out).
        seed: random seed.
        phase: ``"select"`` (validation only) or ``"final"`` (selected beta, evaluated once on test).
        val_acc: validation accuracy of the selected checkpoint.
        test_acc: test accuracy (final phase only, else None).
        wall_s: wall time of the run in seconds.
        student_params: parameter count of the student (of the probe for ``probe``).
        views: number of augmented views used for training (1 = none).
        rho: per teacher, a summary of the learned feature weights (AFT family).
        curve: optional learning curve, a list of ``{"step", "val_acc", "loss"}`` points.
        extra: anything else worth keeping (probe C, inference latency...).
        config: short hash of the suite's shared settings (training budget, student and teacher
            options, pool and test sizes): records made under other settings never count as done.
    """

    suite: str
    dataset: str
    student: str
    teachers: list[str]
    method: str
    beta: float
    train_size: int
    seed: int
    phase: str
    val_acc: float
    test_acc: float | None = None
    wall_s: float = 0.0
    student_params: int = 0
    views: int = 1
    rho: dict[str, dict[str, float]] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    config: str = ""

    @property
    def key(self) -> str:
        """Identity of the run (everything that defines it, nothing it measured)."""
        return run_key(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise DataError(f"run record has unknown fields {sorted(unknown)}; is it from a newer aft?")
        return cls(**data)


def read_records(path: str | Path) -> list[RunRecord]:
    """Read every record of a JSON-lines file (a missing file reads as no records)."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(RunRecord.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(f"{p}:{lineno}: not a valid run record ({exc}); remove or fix that line") from None
    return out


def iter_record_files(paths: Iterable[str | Path]) -> Iterator[RunRecord]:
    """Records from several files, in order."""
    for p in paths:
        yield from read_records(p)


def append_record(path: str | Path, record: RunRecord) -> None:
    """Append one record as a single line, flushed and fsynced (a kill never leaves half a line)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = (record.to_json() + "\n").encode("utf-8")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)

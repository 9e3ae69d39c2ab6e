"""`RunRecord`: one JSON line per finished run of a comparison, the raw material of every report.

Records are appended to a JSON-lines file; a run is identified by its `key` so an interrupted
comparison can skip the runs it already has.

Robustness: every append is one ``os.write`` loop (a short write is retried, a full disk is a
one-line `DiskFullError` and the partial bytes are cut off again), a torn last line left by an
older aft or a crash is repaired before the next append and skipped (with a warning) when read,
non-finite floats are written as ``null`` (the file is strict JSON), duplicate keys read as the
first record, and `records_lock` keeps a second ``aft compare`` from writing the same file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from aft.errors import AftError, DataError, DiskFullError
from aft.paths import is_disk_full

log = logging.getLogger(__name__)


class RecordsLockedError(AftError, RuntimeError):
    """Another process holds the records file's lock (a second `aft compare` on the same file)."""


def run_key(run: Any) -> str:
    """Identity of a run (a `RunRecord` or a grid job): everything that defines it, nothing it measured."""
    teachers = "+".join(run.teachers) or "-"
    return (
        f"{run.suite}|{run.dataset}|{run.student}|{teachers}|{run.method}|beta={run.beta:g}|"
        f"n={run.train_size}|seed={run.seed}|views={run.views}|{run.phase}"
    ) + (f"|cfg={run.config}" if run.config else "") + (
        f"|fold={run.fold}" if getattr(run, "fold", None) is not None else ""
    ) + (f"|steps={run.steps}" if getattr(run, "steps", None) is not None else "")


#: phases of a run: `select` (holdout) and `cv` (one fold) runs are scored on validation only; `final`
#: runs are also evaluated on test once; `regret` runs evaluate every beta on test for the selection
#: regret analysis (never used to choose); `auto` runs train with ``--beta auto`` beside the chosen
#: configuration (analysis only, evaluated on test)
PHASES = ("select", "cv", "final", "regret", "auto")


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
        phase: one of `PHASES`: ``"select"`` / ``"cv"`` (validation only), ``"final"`` (selected beta,
            evaluated once on test), ``"regret"`` or ``"auto"`` (analysis only).
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
        fold: the held-out fold of a ``cv`` run (None otherwise).
        steps: the training steps chosen by cross-validation (``final``/``regret`` runs of a cv
            suite; None: the suite's budget).
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
    fold: int | None = None
    steps: int | None = None

    @property
    def key(self) -> str:
        """Identity of the run (everything that defines it, nothing it measured)."""
        return run_key(self)

    def to_json(self) -> str:
        """One line of strict JSON (NaN and infinities become ``null``)."""
        data = finite_or_null(asdict(self))
        for optional in ("fold", "steps"):  # absent = None: records of holdout suites keep their old form
            if data[optional] is None:
                del data[optional]
        return json.dumps(data, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise DataError(f"run record has unknown fields {sorted(unknown)}; is it from a newer aft?")
        if data.get("val_acc", 0.0) is None:  # a non-finite value was written as null
            data = {**data, "val_acc": float("nan")}
        return cls(**data)


def finite_or_null(value: Any) -> Any:
    """`value` with every NaN / infinite float (at any depth of dicts and lists) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def read_records(path: str | Path) -> list[RunRecord]:
    """Read the records of a JSON-lines file (a missing file reads as no records).

    A torn last line (no trailing newline, not valid JSON: a write cut short by a crash or a full
    disk) is skipped with a warning; the next `append_record` removes it. Records with a key seen
    before are dropped (the first one is kept) and counted in one warning. Any other invalid line
    is a `DataError` naming the line.
    """
    p = Path(path)
    if not p.exists():
        return []
    raw = p.read_bytes()
    lines = raw.decode("utf-8", errors="replace").split("\n")
    torn_tail = not raw.endswith(b"\n") and bool(lines[-1].strip())
    out: list[RunRecord] = []
    seen: set[str] = set()
    duplicates = 0
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = RunRecord.from_dict(json.loads(line))
        except (json.JSONDecodeError, TypeError, AttributeError) as exc:
            if torn_tail and lineno == len(lines):
                log.warning("%s:%d: torn last line (%d bytes, an interrupted write) skipped; it is removed "
                            "before the next record is appended", p, lineno, len(line))
                continue
            raise DataError(f"{p}:{lineno}: not a valid run record ({exc}); remove or fix that line") from None
        try:
            key = record.key
        except (TypeError, ValueError, AttributeError):
            out.append(record)  # ill-typed fields: kept, so the caller's field check names the field
            continue
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        out.append(record)
    if duplicates:
        log.warning("%s: %d duplicate run record(s) (same run key) ignored; the first of each is kept", p, duplicates)
    return out


def iter_record_files(paths: Iterable[str | Path]) -> Iterator[RunRecord]:
    """Records from several files, in order."""
    for p in paths:
        yield from read_records(p)


def write_all(fd: int, data: bytes, path: str | Path) -> None:
    """``os.write`` until every byte of `data` is written (a short write is continued; a write of
    0 bytes or ENOSPC/EDQUOT raises `DiskFullError` naming `path`)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(errno.ENOSPC, f"no space left on device while appending to {path}; free disk "
                                    "space or write the records to another disk, then re-run") from None
            raise
        if n <= 0:
            raise DiskFullError(errno.ENOSPC, f"a write to {path} stored nothing (disk full?); free disk space "
                                "and re-run")
        view = view[n:]


def _repair_tail(fd: int, path: Path) -> None:
    """Make the file end with a newline: a complete record missing only its newline gets one, a
    torn partial line is cut off (with a warning)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    back = min(size, 1 << 20)
    tail = os.pread(fd, back, size - back)
    if tail.endswith(b"\n"):
        return
    cut = tail.rfind(b"\n")
    last = tail[cut + 1:]
    try:
        RunRecord.from_dict(json.loads(last))
    except (ValueError, TypeError, AttributeError, DataError):
        os.ftruncate(fd, size - len(last))
        log.warning("%s: removed a torn last line (%d bytes) left by an interrupted write", path, len(last))
        return
    write_all(fd, b"\n", path)


def append_record(path: str | Path, record: RunRecord) -> None:
    """Append one record as a single line, flushed and fsynced (a kill never leaves half a line).

    A torn last line is repaired first; if this write fails part-way (disk full), the file is cut
    back to its previous size, so the next append starts on a clean line.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = (record.to_json() + "\n").encode("utf-8")
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        _repair_tail(fd, p)
        before = os.fstat(fd).st_size
        try:
            write_all(fd, line, p)
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)
            raise
    finally:
        os.close(fd)


#: records files this process holds the lock of (path -> [lock fd, depth]); the lock is re-entrant
_HELD: dict[str, list[int]] = {}


def lock_path(path: str | Path) -> Path:
    """The sidecar lock file of a records file (``records.jsonl.lock``)."""
    p = Path(path)
    return p.with_name(p.name + ".lock")


@contextlib.contextmanager
def records_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (re-entrant within one process).

    Raises:
        RecordsLockedError: another process holds it (one line naming its pid and the fix).
    """
    p = Path(path)
    key = os.path.realpath(p)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    lp = lock_path(p)
    lp.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "?"
        os.close(fd)
        raise RecordsLockedError(f"another aft compare is writing {p} (pid {holder}); wait for it or use "
                                 "another --records file") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the flock

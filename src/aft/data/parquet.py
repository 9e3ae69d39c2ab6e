"""Datasets from Parquet files, read lazily by row group with pyarrow.

A split is one Parquet file or several shards (`path` option, see `aft.data.shards`:
``<folder>/<split>.parquet``, ``<folder>/<split>-*.parquet``, a ``{split}`` template, a file). The
input column holds texts (strings) or encoded images (binary PNG/JPEG..., or the
``{bytes, path}`` struct the Hugging Face ``Image`` feature writes); without `text_column` /
`image_column` a column named ``image`` (images) or ``text`` is used. Labels are integers
``0..K-1`` or class names, with class names pooled across the splits' files as the CSV loader
does, or taken from the Hugging Face ``ClassLabel`` names in the file's metadata.

Loading reads only the label and id columns in full and, for texts, the text column one row group
at a time (to check it and record the lengths). Inputs are read when a batch needs them: the row
groups holding the batch's rows, one column, kept in a small per-process cache
(`ROW_GROUP_CACHE_BYTES`); nothing else of the file is held in memory. Write random-access data
with small row groups (``pyarrow.parquet.write_table(..., row_group_size=1000)``): a shuffled
training batch touches one row group per sample.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aft.data.columnar import (
    LazyRecords,
    arrow_image_kind,
    arrow_label_codes,
    arrow_text_lengths,
    hash_files,
    image_spec,
    image_value,
    is_image_type,
    label_classes,
    make_ids,
    pick_column,
    require,
    require_column,
)
from aft.data.imagefolder import _size_option
from aft.data.options import path_label
from aft.data.shards import all_split_files, resolve_split_files
from aft.data.split import DatasetSplit
from aft.errors import DataError

#: decoded row-group columns kept per process (at least one row group is kept, whatever its size): enough
#: for batches read in stored order (extraction) to decode each row group once; a shuffled batch (training)
#: touches one row group per sample whatever the cache
ROW_GROUP_CACHE_BYTES = 16 << 20


def _open(path: Path) -> Any:
    pq = require("pyarrow.parquet", "the parquet dataset")
    try:
        return pq.ParquetFile(str(path), memory_map=True)
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise DataError(f"{path} is not a readable Parquet file ({str(exc).splitlines()[0]:.120}); "
                        "write it with pyarrow/pandas to_parquet") from None


class ParquetRows:
    """A `aft.data.columnar.RowReader` over one column of Parquet files, by row group.

    Args:
        files: the split's files, in order.
        column: the input column.
        image: whether it holds images (binary, or ``{bytes, path}`` structs) rather than texts.
        group_starts: global first row of each row group, all files in order, plus the total.
        group_file: the file of each row group; group_index: its index within that file.
        file_starts: global first row of each file.
    """

    def __init__(self, files: Sequence[Path], column: str, image: bool, group_starts: np.ndarray,
                 group_file: np.ndarray, group_index: np.ndarray, file_starts: np.ndarray) -> None:
        self.files = [str(f) for f in files]
        self.column, self.image = column, image
        self.group_starts, self.group_file, self.group_index = group_starts, group_file, group_index
        self.file_starts = file_starts
        self._pid = -1
        self._files: dict[int, Any] = {}
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self._cached_bytes = 0

    def __getstate__(self) -> dict[str, Any]:  # no open file or cached data travels to worker processes
        state = dict(self.__dict__)
        state.update(_pid=-1, _files={}, _cache=OrderedDict(), _cached_bytes=0)
        return state

    def _group(self, g: int) -> Any:
        if self._pid != os.getpid():  # a forked worker: its own handles and cache
            self._pid, self._files, self._cache, self._cached_bytes = os.getpid(), {}, OrderedDict(), 0
        col = self._cache.get(g)
        if col is not None:
            self._cache.move_to_end(g)
            return col
        fi = int(self.group_file[g])
        pf = self._files.get(fi)
        if pf is None:
            pf = self._files[fi] = _open(Path(self.files[fi]))
        col = pf.read_row_group(int(self.group_index[g]), columns=[self.column]).column(0).combine_chunks()
        self._cache[g] = col
        self._cached_bytes += col.nbytes
        while self._cached_bytes > ROW_GROUP_CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes
        return col

    def read(self, rows: np.ndarray) -> list[Any]:
        import pyarrow as pa

        rows = np.asarray(rows, dtype=np.int64)
        groups = np.searchsorted(self.group_starts, rows, side="right") - 1
        out: list[Any] = [None] * len(rows)
        for g in np.unique(groups):  # each row group read once per batch
            where = np.flatnonzero(groups == g)
            col = self._group(int(g))
            local = pa.array(rows[where] - self.group_starts[g], type=pa.int64())
            values = col.take(local).to_pylist()
            for k, v in zip(where, values, strict=True):
                if self.image:
                    fi = self._file_of(int(rows[k]))
                    v = image_value(v, self.describe(int(rows[k])), Path(self.files[fi]).parent)
                out[int(k)] = v
        return out

    def _file_of(self, row: int) -> int:
        return int(np.searchsorted(self.file_starts, row, side="right") - 1)

    def describe(self, row: int) -> str:
        fi = self._file_of(row)
        return f"{self.files[fi]} row {row - int(self.file_starts[fi])}"

    def signature(self, h: Any) -> None:
        h.update(f"parquet|{self.column}|".encode())
        hash_files(h, self.files)


def _hf_class_names(schema: Any, column: str) -> list[str] | None:
    """The ``ClassLabel`` names Hugging Face `datasets` records in a Parquet file's metadata."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return None
    try:
        feature = json.loads(raw)["info"]["features"][column]
    except (ValueError, KeyError, TypeError):
        return None
    names = feature.get("names") if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" else None
    return [str(n) for n in names] if isinstance(names, list) and names else None


def _other_labels(files: Sequence[Path], label_column: str) -> Iterator[tuple[str, int, Any]]:
    for f in files:
        pf = _open(f)
        if label_column not in pf.schema_arrow.names:
            continue  # e.g. an unlabeled file next to the splits
        codes, distinct, first = arrow_label_codes(str(f), pf.read(columns=[label_column]).column(0), label_column)
        yield from ((str(f), int(r), v) for r, v in zip(first, distinct, strict=True))


def load_parquet(
    split: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    path: str,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str = "label",
    id_column: str | None = None,
    class_names: Sequence[str] | None = None,
    mode: str | None = None,
    size: int | Sequence[int] | None = None,
    name: str | None = None,
    lazy: bool = True,
) -> DatasetSplit:
    """Index a split of Parquet files (see the module docstring).

    Args:
        path: a folder with ``<split>.parquet`` (or ``<split>-*.parquet``), a ``{split}`` template, or a file.
        text_column / image_column: the input column (default: ``image`` if it holds images, else ``text``).
        label_column: integer labels or class names.
        id_column: sample ids (default ``<file-stem>-<row>``).
        class_names: classes in label order (``classes=a,b``); default: the file's ``ClassLabel``
            names, else the sorted labels of every split.
        mode / size: image mode ("L"/"RGB") and size, as for `imagefolder`.
        name: dataset name (default: the folder or file stem).
        lazy: False reads every input into memory now.
    """
    files = resolve_split_files(path, split, "parquet")
    handles = [_open(f) for f in files]
    first = handles[0]
    columns = first.schema_arrow.names
    where0 = str(files[0])
    modality, column = pick_column(where0, columns, text_column, image_column,
                                   lambda c: is_image_type(first.schema_arrow.field(c).type))
    require_column(where0, columns, label_column, "label_column")
    if id_column is not None:
        require_column(where0, columns, id_column, "id_column")
    if modality == "image":
        arrow_image_kind(where0, first.schema_arrow.field(column).type, column)
    target_size = _size_option(size)

    group_starts, group_file, group_index, file_starts = [], [], [], []
    label_parts, id_values, stem_rows, lengths = [], [], [], []
    first_image: tuple[bytes, str] | None = None
    total = 0
    for fi, (f, pf) in enumerate(zip(files, handles, strict=True)):
        where = str(f)
        names = pf.schema_arrow.names
        for col, option in ((column, "image_column" if modality == "image" else "text_column"),
                            (label_column, "label_column"), *([(id_column, "id_column")] if id_column else [])):
            require_column(where, names, col, option)
        file_starts.append(total)
        start = 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if n == 0:
                continue
            group_starts.append(total + start)
            group_file.append(fi)
            group_index.append(g)
            if modality == "text":  # checked and measured one row group at a time
                col = pf.read_row_group(g, columns=[column]).column(0)
                lengths.append(arrow_text_lengths(where, col, column, start))
            elif first_image is None:
                cell = pf.read_row_group(g, columns=[column]).column(0)[0].as_py()
                first_image = (image_value(cell, f"{where} row {start}", f.parent), f"{where} row {start}")
            start += n
        label_parts.append(pf.read(columns=[label_column]).column(0))
        if id_column is not None:
            id_values.extend(pf.read(columns=[id_column]).column(0).to_pylist())
        stem_rows.append((f.stem, start))
        total += start
    if total == 0:
        raise DataError(f"{where0}: split {split!r} has no rows; write at least one sample")

    import pyarrow as pa

    labels_col = pa.chunked_array([c for part in label_parts for c in part.chunks], type=label_parts[0].type) \
        if len({p.type for p in label_parts}) == 1 else pa.chunked_array(
            [pa.array(p.to_pylist()) for p in label_parts])
    label_where = where0 if len(files) == 1 else f"{Path(where0).parent}/{split} files"
    codes, distinct, first_rows = arrow_label_codes(label_where, labels_col, label_column)
    this = {f.resolve() for f in files}
    others = [f for f in all_split_files(path, "parquet") if f.resolve() not in this]
    names, mapped = label_classes(label_where, distinct, [int(r) for r in first_rows],
                                  lambda: _other_labels(others, label_column), class_names,
                                  _hf_class_names(first.schema_arrow, label_column))
    labels = mapped[codes]
    ids = make_ids(label_where, id_values if id_column is not None else None,
                   ((stem, r) for stem, n in stem_rows for r in range(n)), total)
    reader = ParquetRows(files, column, modality == "image", np.asarray([*group_starts, total], dtype=np.int64),
                         np.asarray(group_file, dtype=np.int64), np.asarray(group_index, dtype=np.int64),
                         np.asarray(file_starts, dtype=np.int64))
    if modality == "image":
        assert first_image is not None
        spec = image_spec(first_image[0], first_image[1], mode, target_size)
        inputs = LazyRecords(reader, total, "image", image=spec)
    else:
        inputs = LazyRecords(reader, total, "text", lengths=np.concatenate(lengths))
    return DatasetSplit(
        dataset=name or path_label(path),
        split=split,
        ids=ids,
        inputs=inputs if lazy else inputs.materialize(),
        labels=labels,
        class_names=names,
        modality=modality,  # type: ignore[arg-type]
        _ids_unique=True,  # generated, or checked by make_ids
    )


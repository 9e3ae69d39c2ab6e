"""Generic text datasets from CSV and JSON-lines files.

Which file a split reads (`path` option):

* a folder: ``<path>/<split>.csv`` (or ``.jsonl``);
* a template containing ``{split}``: ``data/{split}.csv`` -> ``data/train.csv``;
* a single file: read as is, whatever the split name (it only names the result).

Labels may be integers (``0..K-1``) or class names. Without `class_names` (alias ``classes=a,b``),
names are sorted; in folder mode they are collected from every ``*.csv``/``*.jsonl`` file of the folder so that
train and test agree on the label indices; in template mode from every file the template matches
(``data/{split}.csv`` -> ``data/*.csv``). The dataset is named after the data (`name` option, else
the folder name, the file stem, or the template's stem without ``{split}``), never after the loader.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import sys
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aft.data.ids import IdArray
from aft.data.lazy import LazyTexts
from aft.data.options import path_label
from aft.data.split import DatasetSplit
from aft.errors import DataError

_INT = re.compile(r"^[+-]?\d+$")


def resolve_split_file(path: str | os.PathLike[str], split: str, ext: str) -> Path:
    """The file that `split` reads for the `path` option (see the module docstring)."""
    spath = str(path)
    if "{split}" in spath:
        target = Path(spath.replace("{split}", split))
    elif Path(spath).is_dir():
        target = Path(spath) / f"{split}.{ext}"
        if not target.is_file():
            present = sorted(p.name for p in Path(spath).glob(f"*.{ext}"))
            raise DataError(
                f"no file {target.name} in {spath} (present: {', '.join(present) or 'none'}); "
                f"name the split file <split>.{ext} or pass the file itself as path"
            )
    else:
        target = Path(spath)
    if not target.is_file():
        raise DataError(f"data file {target} not found; check the path option")
    if target.stat().st_size == 0:
        raise DataError(f"data file {target} is empty; it needs a header row and at least one sample")
    return target


def split_files(path: str | os.PathLike[str], ext: str) -> list[Path]:
    """Every split file of the `path` option (a folder's ``*.<ext>``, a template's matches; a single
    file: none besides itself), so that class names are inferred from all splits at once."""
    spath = str(path)
    if "{split}" in spath:
        pattern = glob.escape(spath).replace(glob.escape("{split}"), "*")
        return sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    if Path(spath).is_dir():
        return sorted(Path(spath).glob(f"*.{ext}"))
    return []


Record = tuple[int, int, dict]  # (line number, byte offset of the row's first line, row)


#: the csv module refuses fields over 128 KiB by default; long texts (whole documents) are valid
CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


class _Lines:
    """Decoded lines of a binary file, with the byte offset and number of the next line (for the index)."""

    def __init__(self, fh: io.BufferedReader, path: Path) -> None:
        self.fh, self.path, self.pos, self.lineno, self.start = fh, path, 0, 0, 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.fh:
            start = self.start = self.pos
            self.pos += len(raw)
            self.lineno += 1
            try:
                yield raw.decode("utf-8-sig" if start == 0 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{self.path}: line {self.lineno} is not valid UTF-8 (byte {raw[exc.start]:#04x}); "
                    "re-save the file as UTF-8"
                ) from None


def _iter_csv(path: Path) -> tuple[list[str], Iterator[Record]]:
    """The header and a stream of rows (nothing but the current row is held in memory)."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    fh = open(path, "rb")  # noqa: SIM115 - closed by the generator
    lines = _Lines(fh, path)
    reader = csv.DictReader(lines)
    try:
        columns = list(reader.fieldnames or [])
    except csv.Error as exc:
        fh.close()
        raise DataError(f"{path}: line {reader.line_num} is not valid CSV ({exc}); fix the quoting") from None
    except BaseException:
        fh.close()
        raise
    if not columns:
        fh.close()
        raise DataError(f"data file {path} has no header row; the first line must name the columns")

    def rows() -> Iterator[Record]:
        with fh:
            while True:
                start = lines.pos
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise DataError(f"{path}: line {reader.line_num} is not valid CSV ({exc}); fix the quoting") from None
                if None in row:
                    raise DataError(
                        f"{path}: line {reader.line_num} has more fields than the header ({len(columns)}); "
                        "quote fields that contain commas"
                    )
                yield reader.line_num, start, row

    return columns, rows()


def _iter_jsonl(path: Path) -> tuple[list[str], Iterator[Record]]:
    """No header: the columns are known only after the rows (`_jsonl_columns`); a stream of rows."""

    def rows() -> Iterator[Record]:
        with open(path, "rb") as fh:
            lines = _Lines(fh, path)
            for line in lines:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise DataError(
                        f"{path}: line {lines.lineno} is not valid JSON ({exc.args[0]}); one object per line"
                    ) from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}: line {lines.lineno} is not a JSON object; write one {{...}} object per line")
                yield lines.lineno, lines.start, row

    return [], rows()


def _jsonl_columns(path: Path) -> list[str]:
    columns: dict[str, None] = {}
    for _, _, row in _iter_jsonl(path)[1]:
        columns.update(dict.fromkeys(row))
    return list(columns)


def parse_row_at(fh: Any, offset: int, ext: str, columns: list[str], text_column: str) -> str:
    """The text of the row starting at byte `offset` of an open data file (lazy reads)."""
    from aft.data.lazy import line_reader

    if ext == "csv":
        row = next(csv.DictReader(line_reader(fh, offset), fieldnames=columns))
    else:
        fh.seek(offset)
        row = json.loads(fh.readline().decode("utf-8-sig" if offset == 0 else "utf-8"))
    return row[text_column]


READERS = {"csv": _iter_csv, "jsonl": _iter_jsonl}


def _require_column(path: Path, columns: list[str], column: str, option: str) -> None:
    if column not in columns:
        raise DataError(
            f"{path} has no column {column!r} (columns present: {', '.join(map(repr, columns)) or 'none'}); "
            f"pass {option}=<name of the column>"
        )


def _label_value(path: Path, lineno: int, value: object, unit: str = "line") -> int | str:
    """An int label, or a class name (str); errors name the `unit` (``line``, ``row``, ``sample``) `lineno`."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise DataError(
            f"{path}: {unit} {lineno}: label {value!r} is not an integer or a class name; fix the label"
        )
    if isinstance(value, float):
        if not value.is_integer():
            raise DataError(f"{path}: {unit} {lineno}: label {value!r} is not an integer; labels must be whole numbers")
        return int(value)
    if isinstance(value, int):
        return value
    s = str(value).strip()
    if not s:
        raise DataError(f"{path}: {unit} {lineno}: the label is empty; every sample needs a label")
    if _INT.match(s):
        return int(s)
    try:
        f = float(s)
    except ValueError:
        return s
    if f == f and f.is_integer():  # "2.0"
        return int(f)
    raise DataError(f"{path}: {unit} {lineno}: label {s!r} is not an integer; labels must be whole numbers or names")


#: integer labels name classes ``0..max``; a max far above the number of distinct labels is a
#: column of ids/codes, not class indices (and ``range(max + 1)`` would exhaust memory)
MAX_INFERRED_CLASSES = 100_000


def _infer_class_names(values: Sequence[int | str], path: Path | None = None) -> list[str]:
    if all(isinstance(v, int) for v in values):
        ints = [int(v) for v in values]
        if not ints:
            return []
        top, distinct = max(ints), len(set(ints))
        if top >= MAX_INFERRED_CLASSES or top + 1 > max(2 * distinct, distinct + 100):
            where = f"{path}: " if path is not None else ""
            raise DataError(
                f"{where}integer label {top} would mean {top + 1} classes for {distinct} distinct label(s); "
                "integer labels must be class indices 0..K-1: pass class_names=[...] or use class names as labels"
            )
        return [str(i) for i in range(top + 1)]
    return sorted({str(v) for v in values})


def _encode(path: Path, where: Sequence[int], values: Sequence[int | str], class_names: list[str],
            unit: str = "line") -> np.ndarray:
    index = {n: i for i, n in enumerate(class_names)}
    all_int = all(isinstance(v, int) for v in values)
    out = np.empty(len(values), dtype=np.int64)
    for k, (lineno, v) in enumerate(zip(where, values, strict=True)):
        if isinstance(v, str) or (not all_int and str(v) in index):
            name = str(v)
            if name not in index:
                raise DataError(
                    f"{path}: {unit} {lineno}: unknown class {name!r}; known classes: {', '.join(class_names)} "
                    "(pass class_names to list them all)"
                )
            out[k] = index[name]
        else:
            if not 0 <= v < len(class_names):
                raise DataError(
                    f"{path}: {unit} {lineno}: label {v} is out of range for {len(class_names)} classes; "
                    f"integer labels must be in [0, {len(class_names) - 1}]"
                )
            out[k] = v
    return out


def _labels_of_file(path: Path, ext: str, label_column: str) -> set[int | str]:
    """The distinct labels of another split file (streamed)."""
    columns, records = READERS[ext](path)
    if ext == "csv":
        _require_column(path, columns, label_column, "label_column")
    out: set[int | str] = set()
    for ln, _, row in records:
        if label_column not in row and ext == "jsonl":
            _require_column(path, _jsonl_columns(path), label_column, "label_column")
        out.add(_label_value(path, ln, row.get(label_column)))
    return out


def load_table(
    split: str,
    *,
    ext: str,
    path: str | os.PathLike[str],
    text_column: str = "text",
    label_column: str = "label",
    id_column: str | None = None,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
    lazy: bool = True,
) -> DatasetSplit:
    """Index a text split of a CSV or JSONL file (see the module docstring for `path`).

    The file is read once, as a stream: every row is checked and its byte offset, label, id and text
    length kept; with `lazy` (the default) the texts are read back by offset when a batch needs them
    (`aft.data.lazy.LazyTexts`), otherwise they are kept in memory.
    """
    file = resolve_split_file(path, split, ext)
    columns, records = READERS[ext](file)
    if ext == "csv":
        _require_column(file, columns, text_column, "text_column")
        _require_column(file, columns, label_column, "label_column")
        if id_column is not None:
            _require_column(file, columns, id_column, "id_column")
    required = [(text_column, "text_column"), (label_column, "label_column")]
    if id_column is not None:
        required.append((id_column, "id_column"))
    texts: list[str] = []
    offsets = array("q")  # 8 bytes a row (a list of ints costs ~36)
    lengths = array("q")
    ids: list[str] = []  # the current chunk; encoded into `id_parts` every CHUNK rows (no str kept per row)
    id_parts: list[IdArray] = []
    labels_seen: dict[int | str, int | str] = {}
    where = array("q")
    values: list[int | str] = []
    for i, (lineno, offset, row) in enumerate(records):
        if ext == "jsonl":
            for column, option in required:  # a key no row has is a missing column, not a bad row
                if column not in row:
                    _require_column(file, _jsonl_columns(file), column, option)
        text = row.get(text_column)
        if not isinstance(text, str):
            raise DataError(f"{file}: line {lineno}: {text_column!r} is {text!r}, not a string; fix the row")
        if not text.strip():
            raise DataError(f"{file}: line {lineno}: the text in column {text_column!r} is empty; remove or fill the row")
        if id_column is not None:
            raw_id = row.get(id_column)
            sid = "" if raw_id is None else str(raw_id).strip()
            if not sid:
                raise DataError(f"{file}: line {lineno}: the id in column {id_column!r} is empty; every row needs an id")
        else:
            sid = f"{split}-{i:06d}"
        if not lazy:
            texts.append(text)
        offsets.append(offset)
        lengths.append(len(text))
        ids.append(sid)
        if len(ids) == ID_CHUNK:
            id_parts.append(IdArray(ids))
            ids = []
        where.append(lineno)
        value = _label_value(file, lineno, row.get(label_column))
        values.append(labels_seen.setdefault(value, value))  # one object per distinct label, not per row
    del labels_seen
    id_parts.append(IdArray(ids))
    all_ids = IdArray.concatenate(id_parts)
    del ids, id_parts
    if id_column is not None:
        _check_unique_ids(file, all_ids, where)
    if not len(all_ids):
        raise DataError(f"data file {file} has no samples; add at least one row")
    if class_names is not None:
        names = [str(n) for n in class_names]
        if len(set(names)) != len(names) or not names:
            raise DataError(f"class_names must be a non-empty list of distinct names, got {names}")
    else:
        pool = set(values)
        for other in split_files(path, ext):
            if other.resolve() != file.resolve() and other.stat().st_size > 0:
                pool |= _labels_of_file(other, ext, label_column)
        if any(isinstance(v, int) and v < 0 for v in pool) and all(isinstance(v, int) for v in pool):
            bad = next(v for v in values if isinstance(v, int) and v < 0)
            raise DataError(f"{file}: label {bad} is out of range; integer labels must be >= 0")
        names = _infer_class_names(sorted(pool, key=str), file)
    labels = _encode(file, where, values, names)
    del where, values
    inputs: list[str] | LazyTexts = texts
    if lazy:
        inputs = LazyTexts(file, ext, np.frombuffer(offsets, dtype=np.int64).copy(), columns, text_column,
                           np.frombuffer(lengths, dtype=np.int64).copy())
    return DatasetSplit(
        dataset=name or path_label(path),
        split=split,
        ids=all_ids,
        inputs=inputs,
        labels=labels,
        class_names=names,
        modality="text",
        _ids_unique=True,  # generated, or checked above
    )


#: ids encoded per chunk while a data file is indexed
ID_CHUNK = 8192


def _check_unique_ids(file: Path, ids: IdArray, where: Any, unit: str = "line") -> None:
    """Raise `DataError` naming the line of a repeated id and of its first occurrence (a sort, no set)."""
    a = ids.array
    order = np.argsort(a, kind="stable")
    s = a[order]
    dup = np.flatnonzero(s[1:] == s[:-1])
    if dup.size == 0:
        return
    # the repeat that comes first in the file, and the first line holding its id
    again = int(order[dup + 1].min())
    first = int(np.flatnonzero(a == a[again])[0])
    raise DataError(
        f"{file}: {unit} {where[again]}: duplicate id {ids[again]!r} (first at {unit} {where[first]}); ids must be unique"
    )


def load_csv(
    split: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    path: str,
    text_column: str = "text",
    label_column: str = "label",
    id_column: str | None = None,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
    lazy: bool = True,
) -> DatasetSplit:
    """Load a text split from CSV (header row; columns `text_column`, `label_column`, optional `id_column`)."""
    return load_table(
        split, ext="csv", path=path, text_column=text_column, label_column=label_column,
        id_column=id_column, class_names=class_names, name=name, lazy=lazy,
    )


def load_jsonl(
    split: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    path: str,
    text_column: str = "text",
    label_column: str = "label",
    id_column: str | None = None,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
    lazy: bool = True,
) -> DatasetSplit:
    """Load a text split from JSON lines (one object per line with the text and label keys)."""
    return load_table(
        split, ext="jsonl", path=path, text_column=text_column, label_column=label_column,
        id_column=id_column, class_names=class_names, name=name, lazy=lazy,
    )

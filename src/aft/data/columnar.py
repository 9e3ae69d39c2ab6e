"""What the Parquet, Hugging Face `datasets` and WebDataset loaders share.

* `LazyRecords`: a `LazyInputs` over the rows of a `RowReader` (a Parquet file's row groups, a
  memory-mapped Arrow table, tar members at known offsets). A batch is one ``reader.read(rows)``
  (so a reader can group rows, e.g. by Parquet row group), then texts are returned as they are and
  image bytes are decoded with Pillow (`aft.data.imagefolder.decode_image_bytes`).
* Labels from per-row values: the distinct values are checked and mapped once, with the rules of
  the CSV loader (integers ``0..K-1`` or class names, names pooled across splits, ``classes=``).
* Ids from an id column (checked: present, unique) or ``<file-stem>-<row>``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aft.data.ids import IdArray
from aft.data.lazy import LazyInputs
from aft.data.tabular import ID_CHUNK, _check_unique_ids, _encode, _infer_class_names, _label_value
from aft.errors import ConfigError, DataError

#: how to install the optional readers
INSTALL_DATA = "pip install 'aft[data]'"


def require(module: str, what: str) -> Any:
    """Import `module` (``"pyarrow.parquet"``, ``"datasets"``) or raise a `DataError` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:  # installed but broken (ImportError): a traceback, not an install hint
        raise DataError(f"{what} needs the {module.split('.')[0]!r} package; {INSTALL_DATA}") from None


class RowReader(Protocol):
    """Reads the raw inputs (str or encoded image bytes) of source rows; picklable, no open handle
    travels with it (each process opens its own)."""

    def read(self, rows: np.ndarray) -> list[Any]:
        """The raw value of each row, in the order given."""

    def describe(self, row: int) -> str:
        """Where row `row` is, for errors (``"train.parquet row 3"``)."""

    def signature(self, h: Any) -> None:
        """Update hash `h` with what identifies the source's content without reading it all."""


@dataclass(frozen=True)
class ImageSpec:
    """How images are decoded: `mode` ("L"/"RGB"), `size` to resize to (or None: every image must
    be `expect_size`), `strict_mode` (no `mode` option: every image must already be in `mode`),
    `first` (names the image that set mode and size, for errors)."""

    mode: str
    size: tuple[int, int] | None
    expect_size: tuple[int, int]
    strict_mode: bool
    first: str


class LazyRecords(LazyInputs):
    """Texts or images of a `RowReader`, read on access (see the module docstring).

    Args:
        reader: reads the raw values of source rows.
        n: number of source rows.
        modality: ``"text"`` or ``"image"``.
        image: how to decode images (image modality).
        lengths: characters per text (text modality; for length-sorted extraction batches).
    """

    def __init__(self, reader: RowReader, n: int, modality: str, image: ImageSpec | None = None,
                 lengths: np.ndarray | None = None) -> None:
        super().__init__(np.arange(n, dtype=np.int64))
        if modality == "image" and image is None:
            raise ValueError("image records need an ImageSpec")
        self.reader, self.modality, self.image = reader, modality, image
        self._lengths = lengths if lengths is not None else np.zeros(n, dtype=np.int64)
        self._handles: dict[int, Any] = {}

    dtype = np.dtype(np.uint8)

    @property
    def shape(self) -> tuple[int, ...]:
        """Images: ``(N, H, W)`` or ``(N, H, W, 3)`` as the in-memory array would have (nothing is read)."""
        if self.image is None:
            raise AttributeError("text records have no shape")
        w, h = self.image.size or self.image.expect_size
        return (len(self), h, w) + (() if self.image.mode == "L" else (3,))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _decode(self, row: int, raw: Any) -> Any:
        if self.image is None:
            return raw
        from aft.data.imagefolder import decode_image_bytes

        spec = self.image
        return decode_image_bytes(raw, f"image {self.reader.describe(row)}", spec.mode, spec.size, spec.expect_size,
                                  spec.strict_mode, spec.first, fix="replace the image bytes or drop the row")

    def take(self, key: Any) -> np.ndarray | list[str]:
        rows = self._rows[self._positions(key)]
        raws = self.reader.read(rows)
        return self._stack([self._decode(int(r), raw) for r, raw in zip(rows, raws, strict=True)])

    def _read_row(self, row: int) -> Any:
        return self._decode(row, self.reader.read(np.array([row], dtype=np.int64))[0])

    def _stack(self, items: list[Any]) -> np.ndarray | list[str]:
        if self.image is None:
            return items
        if not items:
            return np.empty((0, *self.shape[1:]), dtype=np.uint8)
        return np.stack(items)

    def lengths(self) -> np.ndarray:
        return self._lengths[self._rows]

    def _signature(self, h: Any) -> None:
        h.update(f"{self.modality}|{self.image}|".encode())
        self.reader.signature(h)


def hash_files(h: Any, files: Sequence[str]) -> None:
    """Update `h` with each file's name, size and modification time (as for image files: no full
    read of large files); a file that is gone is a `DataError`."""
    import os

    for f in files:
        try:
            st = os.stat(f)
        except OSError as exc:
            raise DataError(f"data file {f} is gone ({exc.strerror}); reload the dataset") from None
        h.update(f"{os.path.basename(f)}\x1f{st.st_size}\x1f{st.st_mtime_ns}\x1e".encode())


def image_spec(first_raw: bytes, first: str, mode: str | None, size: tuple[int, int] | None) -> ImageSpec:
    """The `ImageSpec` set by the first image's header (its mode and size) and the options."""
    from PIL import Image

    from aft.data.imagefolder import _GRAY_MODES

    if mode is not None and mode not in ("L", "RGB"):
        raise ConfigError(f"mode must be 'L' or 'RGB', got {mode!r}")
    try:
        with Image.open(io.BytesIO(first_raw)) as im:  # the header only
            first_mode = "L" if im.mode in _GRAY_MODES else "RGB"
            first_size = im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {first} ({exc!s:.100}); the image column must hold encoded "
                        "image bytes (PNG, JPEG, ...): replace the bytes or drop the row") from None
    return ImageSpec(mode or first_mode, size, size or first_size, mode is None, first)


# -- labels ------------------------------------------------------------------------------------------


def label_classes(where: str, distinct: Sequence[Any], first_rows: Sequence[int],
                  other_values: Callable[[], Iterable[tuple[str, int, Any]]] | None,
                  class_names: Sequence[str] | None,
                  known_names: Sequence[str] | None = None, unit: str = "row") -> tuple[list[str], np.ndarray]:
    """Class names and the label index of each distinct raw label value.

    Args:
        where: the file or dataset named in errors.
        distinct: the distinct raw label values of this split (Python ints, floats or str).
        first_rows: the first row holding each distinct value (named in errors).
        other_values: ``(where, row, value)`` for the distinct raw labels of the other splits (for
            inferred names), called only when names are inferred.
        class_names: the `class_names` option (wins), or None.
        known_names: names the data declares (a Hugging Face ``ClassLabel``), used before inferring.
        unit: what `first_rows` count (``"row"``, ``"sample"``).
    """
    path = Path(where)
    values = [_label_value(path, r, v, unit) for r, v in zip(first_rows, distinct, strict=True)]
    if class_names is not None:
        names = [str(n) for n in class_names]
        if len(set(names)) != len(names) or not names:
            raise DataError(f"class_names must be a non-empty list of distinct names, got {names}")
    elif known_names:
        names = [str(n) for n in known_names]
    else:
        pool = set(values)
        if other_values is not None:
            pool |= {_label_value(Path(w), r, v, unit) for w, r, v in other_values()}
        if all(isinstance(v, int) for v in pool) and any(v < 0 for v in pool):  # type: ignore[operator]
            bad = min(v for v in pool if isinstance(v, int))
            raise DataError(f"{where}: label {bad} is out of range; integer labels must be >= 0")
        names = _infer_class_names(sorted(pool, key=str), path)
    return names, _encode(path, first_rows, values, names, unit)


def first_rows_of(codes: np.ndarray, k: int) -> np.ndarray:
    """The first row of each code ``0..k-1`` in `codes` (every code must occur)."""
    first = np.full(k, -1, dtype=np.int64)
    uniq, idx = np.unique(codes, return_index=True)
    first[uniq] = idx
    return first


def make_ids(where: str, given: Sequence[Any] | None, stem_rows: Iterable[tuple[str, int]], n: int,
             unit: str = "row") -> IdArray:
    """Sample ids: the `given` id column's values as str (none empty, all unique), else
    ``<stem>-<row:06d>`` for each ``(stem, row)`` of `stem_rows`."""
    if given is None:
        parts, chunk = [], []
        for stem, row in stem_rows:  # encoded 8192 at a time: no str kept per sample
            chunk.append(f"{stem}-{row:06d}")
            if len(chunk) == ID_CHUNK:
                parts.append(IdArray(chunk))
                chunk = []
        return IdArray.concatenate([*parts, IdArray(chunk)])
    out: list[str] = []
    for i, v in enumerate(given):
        sid = "" if v is None else str(v).strip()
        if not sid:
            raise DataError(f"{where}: {unit} {i}: the id is empty; every sample needs an id")
        out.append(sid)
    ids = IdArray(out)
    _check_unique_ids(Path(where), ids, np.arange(n), unit)
    return ids


# -- Arrow columns (Parquet, Hugging Face datasets) -------------------------------------------------


def arrow_label_codes(where: str, column: Any, label_column: str) -> tuple[np.ndarray, list[Any], np.ndarray]:
    """A label column (pyarrow array or chunked array) as ``(codes, distinct values, first rows)``:
    row i has label value ``distinct[codes[i]]``; no Python object per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t)
            or pa.types.is_large_string(t)):
        raise DataError(f"{where}: label column {label_column!r} has type {t}; labels must be integers or "
                        "class names: pass label_column=<the label column>")
    if column.null_count:
        row = int(np.flatnonzero(np.asarray(pc.is_null(column)))[0])
        raise DataError(f"{where}: row {row}: the label is missing (null); every sample needs a label")
    enc = pc.dictionary_encode(column)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.unify_dictionaries() if enc.num_chunks > 1 else enc
        chunks = enc.chunks
        dictionary = chunks[0].dictionary if chunks else pa.array([], type=t)
        codes = np.concatenate([np.asarray(c.indices, dtype=np.int64) for c in chunks]) if chunks else \
            np.zeros(0, dtype=np.int64)
    else:
        dictionary, codes = enc.dictionary, np.asarray(enc.indices, dtype=np.int64)
    distinct = dictionary.to_pylist()
    return codes, distinct, first_rows_of(codes, len(distinct))


def arrow_text_lengths(where: str, column: Any, text_column: str, start: int = 0) -> np.ndarray:
    """Characters per text of a string column (rows numbered from `start` in errors); raises
    `DataError` on a non-string column, a missing or a blank text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise DataError(f"{where}: text column {text_column!r} has type {t}, not strings; pass "
                        "text_column=<a string column> (or image_column=... for images)")
    if column.null_count:
        row = start + int(np.flatnonzero(np.asarray(pc.is_null(column)))[0])
        raise DataError(f"{where}: row {row}: the text in column {text_column!r} is missing (null); "
                        "remove or fill the row")
    blank = np.asarray(pc.match_substring_regex(column, r"^[\s\p{Z}]*$"))  # no copy of the texts (as a trim would make)
    if blank.any():
        row = start + int(np.flatnonzero(blank)[0])
        raise DataError(f"{where}: row {row}: the text in column {text_column!r} is empty; remove or fill the row")
    return np.asarray(pc.utf8_length(column), dtype=np.int64)


def arrow_image_kind(where: str, t: Any, image_column: str) -> str | None:
    """``None`` for a binary column of encoded images, ``"bytes"`` for a Hugging Face ``Image``
    struct ``{bytes, path}``; a `DataError` for anything else."""
    import pyarrow as pa

    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return None
    if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0:
        return "bytes"
    raise DataError(f"{where}: image column {image_column!r} has type {t}; it must hold encoded image bytes "
                    "(binary, or a {bytes, path} struct as Hugging Face writes): pass image_column=<that column>")


def is_image_type(t: Any) -> bool:
    """Whether an Arrow type can hold encoded images (see `arrow_image_kind`)."""
    try:
        arrow_image_kind("", t, "")
    except DataError:
        return False
    return True


def image_value(value: Any, where: str, base: Path | None) -> bytes:
    """The encoded bytes of one image cell: bytes, or a ``{bytes, path}`` struct whose bytes are
    missing and whose path is a file (absolute, or relative to `base`)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return bytes(value["bytes"])
        if value.get("path"):
            f = Path(value["path"])
            f = f if f.is_absolute() or base is None else base / f
            try:
                return f.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read image {where}: no bytes, and its path {str(f)!r} cannot be read "
                                f"({exc.strerror}); embed the image bytes in the data") from None
    raise DataError(f"cannot read image {where}: the cell is empty; every sample needs an image")


def pick_column(where: str, columns: Sequence[str], text_column: str | None, image_column: str | None,
                is_image: Callable[[str], bool]) -> tuple[str, str]:
    """``(modality, column)`` of the inputs: the given `image_column` or `text_column`, else a
    column named ``image``/``img`` holding images, else ``text``."""
    if text_column is not None and image_column is not None:
        raise ConfigError("give text_column= or image_column=, not both (one input column per dataset)")
    wanted = [(image_column, "image", "image_column"), (text_column, "text", "text_column")]
    for col, modality, option in wanted:
        if col is not None:
            require_column(where, columns, col, option)
            return modality, col
    for col in ("image", "img"):
        if col in columns and is_image(col):
            return "image", col
    if "text" in columns:
        return "text", "text"
    raise DataError(f"{where} has no 'image' or 'text' column (columns present: "
                    f"{', '.join(map(repr, columns)) or 'none'}); pass text_column=<name> or image_column=<name>")


def require_column(where: str, columns: Sequence[str], column: str, option: str) -> None:
    """Raise `DataError` naming the present columns when `column` is not one of them."""
    if column not in columns:
        raise DataError(f"{where} has no column {column!r} (columns present: "
                        f"{', '.join(map(repr, columns)) or 'none'}); pass {option}=<name of the column>")

"""Lazy inputs: an index of samples whose inputs are read from disk only when a batch needs them.

A `LazyInputs` is what `DatasetSplit.inputs` holds for image folders (file paths) and CSV/JSONL
files (byte offsets of the rows): it has a length, reads one sample (``inputs[i]``) or a batch
(``inputs[idx]``, ``inputs[a:b]``: a uint8 array for images, a list of str for texts), and makes
row subsets without reading anything (``select``). Reading is safe in `DataLoader` worker
processes (each process opens its own file handle). Sample ids and labels stay in memory: they
are the join key with the feature store.

Fingerprints of lazy inputs hash what identifies the content without decoding it: for image files
their relative path, size and modification time; for a text file its bytes (one sequential pass),
plus the rows selected.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aft.errors import DataError

#: samples read per chunk when a lazy input is iterated
ITER_CHUNK = 256


class LazyInputs:
    """Base class of lazily read inputs over rows ``rows`` of a source (see the module docstring).

    Subclasses implement `_read_row(row)` and `_signature(h)`; the row view (`select`) is shared.
    """

    modality: str = "image"

    def __init__(self, rows: np.ndarray) -> None:
        self._rows = np.asarray(rows, dtype=np.int64)

    # -- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._rows.size)

    def _read_row(self, row: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _positions(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            return np.arange(len(self), dtype=np.int64)[key]
        pos = np.asarray(key, dtype=np.int64).reshape(-1)
        if pos.size and (pos.min() < -len(self) or pos.max() >= len(self)):
            raise IndexError(f"sample index out of range for {len(self)} samples")
        return pos

    def take(self, key: Any) -> np.ndarray | list[str]:
        """The batch at positions `key` (indices or a slice): uint8 ``(n, ...)`` images or a list of texts."""
        items = [self._read_row(int(self._rows[p])) for p in self._positions(key)]
        return self._stack(items)

    def _stack(self, items: list[Any]) -> np.ndarray | list[str]:
        return items

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"sample index {i} out of range for {len(self)} samples")
            return self._read_row(int(self._rows[i]))
        return self.take(key)

    def __iter__(self) -> Iterator[Any]:
        for s in range(0, len(self), ITER_CHUNK):
            yield from self.take(slice(s, s + ITER_CHUNK))

    # -- views ---------------------------------------------------------------------------------
    def select(self, positions: Sequence[int] | np.ndarray) -> LazyInputs:
        """The inputs at `positions` (nothing is read)."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._rows = self._rows[np.asarray(positions, dtype=np.int64)]
        view._handles = {}
        return view

    def materialize(self) -> np.ndarray | list[str]:
        """Every input read into memory (the eager form of the same samples)."""
        return self.take(slice(None))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:  # np.asarray(inputs): read all
        arr = np.asarray(self.materialize())
        return arr if dtype is None else arr.astype(dtype)

    def lengths(self) -> np.ndarray:
        """Per-sample sizes used for length-sorted batching (texts: characters)."""
        return np.zeros(len(self), dtype=np.int64)

    def signature(self, h: Any) -> None:
        """Update the hash `h` with what identifies these inputs (see the module docstring)."""
        h.update(type(self).__name__.encode())
        self._signature(h)
        h.update(self._rows.tobytes())

    def _signature(self, h: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:  # file handles never travel to worker processes
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def __eq__(self, other: object) -> bool:  # compares content, like the in-memory forms
        if isinstance(other, LazyInputs):
            other = other.materialize()
        mine = self.materialize()
        if isinstance(mine, np.ndarray):
            return isinstance(other, np.ndarray) and mine.shape == other.shape and bool((mine == other).all())
        return list(mine) == list(other)  # type: ignore[arg-type]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples)"


class LazyImages(LazyInputs):
    """Image files under `root`, decoded with Pillow on access (mode ``"L"``/``"RGB"``, optional resize).

    Args:
        root: folder the paths are relative to.
        paths: one relative path per source row.
        mode: the mode every image is converted to.
        size: ``(width, height)`` to resize to, or None: every image must have ``expect_size``.
        expect_size: the size of the first image (checked per image when `size` is None).
        strict_mode: without a `mode` option, an image of another mode is an error (as in eager loading).
    """

    modality = "image"

    def __init__(self, root: Path, paths: list[str], mode: str, size: tuple[int, int] | None,
                 expect_size: tuple[int, int], strict_mode: bool, first: str) -> None:
        super().__init__(np.arange(len(paths), dtype=np.int64))
        self.root, self.paths, self.mode, self.size = Path(root), paths, mode, size
        self._root_str = str(self.root)
        self.expect_size, self.strict_mode, self.first = expect_size, strict_mode, first
        self._handles: dict[int, Any] = {}

    dtype = np.dtype(np.uint8)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, H, W)`` or ``(N, H, W, 3)``, as the in-memory array would have (nothing is read)."""
        w, h = self.size or self.expect_size
        return (len(self), h, w) + (() if self.mode == "L" else (3,))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _read_row(self, row: int) -> np.ndarray:
        from aft.data.imagefolder import decode_image

        # os.path, not pathlib: pathlib interns every path part it parses (memory that grows per file)
        f = os.path.join(self._root_str, self.paths[row])
        return decode_image(f, self.mode, self.size, self.expect_size, self.strict_mode, self.first)

    def _stack(self, items: list[Any]) -> np.ndarray:
        if not items:
            return np.empty((0, *self.shape[1:]), dtype=np.uint8)
        return np.stack(items)

    def _signature(self, h: Any) -> None:
        h.update(f"{self.mode}|{self.size}|{self.expect_size}".encode())
        for row in self._rows:
            rel = self.paths[int(row)]
            path = os.path.join(self._root_str, rel)
            try:
                st = os.stat(path)
            except OSError as exc:
                raise DataError(f"image {path} is gone ({exc.strerror}); reload the dataset") from None
            h.update(f"{rel}\x1f{st.st_size}\x1f{st.st_mtime_ns}\x1e".encode())


class LazyTexts(LazyInputs):
    """Texts of a CSV or JSON-lines file, read by byte offset on access.

    Args:
        file: the data file.
        ext: ``"csv"`` or ``"jsonl"``.
        offsets: byte offset of each source row's first line.
        columns: the CSV header (field names); unused for JSONL.
        text_column: the column holding the text.
        lengths: each row's text length in characters (for length-sorted extraction batches).
    """

    modality = "text"

    def __init__(self, file: Path, ext: str, offsets: np.ndarray, columns: list[str], text_column: str,
                 lengths: np.ndarray) -> None:
        super().__init__(np.arange(len(offsets), dtype=np.int64))
        self.file, self.ext, self.offsets, self.columns = Path(file), ext, offsets, columns
        self.text_column, self._lengths = text_column, lengths
        self._handles: dict[int, Any] = {}

    def _handle(self) -> Any:
        pid = os.getpid()
        fh = self._handles.get(pid)
        if fh is None:
            self._handles.clear()
            fh = self._handles[pid] = open(self.file, "rb")  # noqa: SIM115 - kept open for the process
        return fh

    def _read_row(self, row: int) -> str:
        from aft.data.tabular import parse_row_at

        return parse_row_at(self._handle(), int(self.offsets[row]), self.ext, self.columns, self.text_column)

    def lengths(self) -> np.ndarray:
        return self._lengths[self._rows]

    def _signature(self, h: Any) -> None:
        h.update(f"{self.ext}|{self.text_column}|".encode())
        h.update(file_digest(self.file).encode())


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (cached per path, size and mtime within the process)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def line_reader(fh: io.BufferedReader, offset: int) -> Iterator[str]:
    """Decoded lines of `fh` from byte `offset` (for csv.reader / json over one record)."""
    fh.seek(offset)
    for raw in fh:
        yield raw.decode("utf-8-sig" if offset == 0 else "utf-8")

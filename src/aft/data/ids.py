"""Compact sample ids: one fixed-width UTF-8 bytes array instead of a Python list of str.

At millions of samples a list of str costs ~70 bytes an id (object header, pointer) and, in
forked DataLoader workers, every read of a str touches its reference count, so the pages holding
the list are copied into each worker (copy-on-write). An `IdArray` holds the ids as one numpy
``S<width>`` array (the UTF-8 bytes, NUL-padded): ~width bytes an id, no Python objects, nothing
touched by reading. It is a read-only ``Sequence[str]`` (indexing gives str, iteration yields str,
it equals the list of the same ids), so code written for lists keeps working; `IdIndex` finds
ids' positions with a sorted permutation and `numpy.searchsorted` instead of a dict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from aft.errors import DataError

#: ids encoded / decoded per chunk (bounded transient memory)
CHUNK = 8192


def _encode_chunk(ids: Sequence[str]) -> list[bytes]:
    out = []
    for sid in ids:
        if not isinstance(sid, str):
            sid = str(sid)
        b = sid.encode("utf-8")
        if b.endswith(b"\0"):
            raise DataError(f"sample id {sid!r} ends with a NUL character; sample ids must not")
        out.append(b)
    return out


class IdArray(Sequence[str]):
    """Sample ids as one fixed-width UTF-8 bytes array; a read-only ``Sequence[str]``.

    Build it with ``IdArray(list_of_str)`` (encoded chunk by chunk) or ``IdArray.from_bytes(arr)``
    (an ``S`` array). ``ids[i]`` is a str, ``ids[a:b]`` and ``ids[int_array]`` are IdArrays.
    """

    __slots__ = ("_a",)

    def __init__(self, ids: Iterable[str] | IdArray | np.ndarray = ()) -> None:
        if isinstance(ids, IdArray):
            self._a = ids._a
            return
        if isinstance(ids, np.ndarray) and ids.dtype.kind == "S":
            self._a = ids
            return
        seq = ids if isinstance(ids, Sequence) else list(ids)
        chunks = [_encode_chunk(seq[s : s + CHUNK]) for s in range(0, len(seq), CHUNK)]  # type: ignore[index]
        width = max((len(b) for c in chunks for b in c), default=0)
        out = np.zeros(len(seq), dtype=f"S{max(1, width)}")
        pos = 0
        for c in chunks:
            out[pos : pos + len(c)] = c
            pos += len(c)
        self._a = out

    @classmethod
    def from_bytes(cls, array: np.ndarray) -> IdArray:
        """Wrap an ``S`` (bytes) array without copying."""
        if array.dtype.kind != "S":
            raise TypeError(f"expected a numpy bytes (S) array, got {array.dtype}")
        return cls(array)

    @classmethod
    def concatenate(cls, parts: Sequence[IdArray]) -> IdArray:
        if not parts:
            return cls()
        width = max(p._a.dtype.itemsize for p in parts)
        return cls(np.concatenate([p._a.astype(f"S{width}") for p in parts]))

    @property
    def array(self) -> np.ndarray:
        """The underlying ``S<width>`` array (UTF-8, NUL-padded); do not modify it."""
        return self._a

    @property
    def nbytes(self) -> int:
        return int(self._a.nbytes)

    def __len__(self) -> int:
        return int(self._a.shape[0])

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            return self._a[int(key)].decode("utf-8")
        if isinstance(key, slice):
            return IdArray(self._a[key])
        idx = np.asarray(key.cpu() if hasattr(key, "cpu") else key)
        if idx.dtype == bool:
            return IdArray(self._a[idx])
        return IdArray(self._a[idx.astype(np.int64, copy=False).reshape(-1)])

    def __iter__(self) -> Iterator[str]:
        for s in range(0, len(self), CHUNK):
            for b in self._a[s : s + CHUNK].tolist():
                yield b.decode("utf-8")

    def __contains__(self, sid: object) -> bool:
        if not isinstance(sid, str):
            return False
        return bool((self._a == sid.encode("utf-8")).any())

    def tolist(self) -> list[str]:
        return list(self)

    def joined(self, sep: bytes, start: int = 0, stop: int | None = None) -> bytes:
        """``sep.join(id.encode() for id in self[start:stop])`` without decoding."""
        return sep.join(self._a[start:stop].tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IdArray):
            return len(self) == len(other) and bool(np.array_equal(self._a, other._a))
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Any) -> list[str]:
        return list(self) + list(other)

    def __radd__(self, other: Any) -> list[str]:
        return list(other) + list(self)

    def __repr__(self) -> str:
        head = ", ".join(repr(s) for s in self[:3])
        return f"IdArray([{head}{', ...' if len(self) > 3 else ''}], n={len(self)}, width={self._a.dtype.itemsize})"

    def __reduce__(self) -> Any:
        return (IdArray, (self._a,))

    def first_duplicate(self) -> str | None:
        """An id that occurs twice, or None (a sort, no hash set)."""
        if len(self) < 2:
            return None
        s = np.sort(self._a)
        dup = np.flatnonzero(s[1:] == s[:-1])
        return None if dup.size == 0 else s[int(dup[0])].decode("utf-8")

    def to_json_chunks(self) -> Iterator[bytes]:
        """The bytes of ``json.dumps(list(self))`` in pieces (for streaming to a file)."""
        yield b"["
        for s in range(0, len(self), CHUNK):
            body = ", ".join(json.dumps(b.decode("utf-8")) for b in self._a[s : s + CHUNK].tolist())
            yield ((", " if s else "") + body).encode()
        yield b"]"


def as_ids(ids: Sequence[str] | IdArray) -> IdArray:
    """`ids` as an `IdArray` (no copy if it already is one)."""
    return ids if isinstance(ids, IdArray) else IdArray(ids)


def json_chunks(ids: Sequence[str]) -> Iterator[bytes]:
    """The bytes of ``json.dumps(list(ids))`` in pieces, for any sequence of str."""
    if isinstance(ids, IdArray):
        yield from ids.to_json_chunks()
        return
    yield b"["
    for s in range(0, len(ids), CHUNK):
        body = ", ".join(json.dumps(i) for i in ids[s : s + CHUNK])
        yield ((", " if s else "") + body).encode()
    yield b"]"


def parse_json_ids(data: bytes) -> IdArray | None:
    """Parse ``ids.json`` bytes straight into an `IdArray`, if they are what aft writes.

    The fast path takes a JSON list of strings without escapes (no backslash), separated by
    ``", "`` (``json.dumps`` of ASCII-safe ids); it works on arrays of the string offsets, in
    small chunks (no Python str per id, little transient memory). Anything else returns None:
    the caller falls back to `json.loads`.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    text = data.strip()
    if text == b"[]":
        return IdArray()
    if (buf == ord("\\")).any():
        return None
    quotes = np.flatnonzero(buf == ord('"'))
    if quotes.size == 0 or quotes.size % 2:
        return None
    starts, ends = quotes[0::2] + 1, quotes[1::2]  # string i is data[starts[i]:ends[i]]
    n = int(starts.size)
    if data[: starts[0] - 1].strip() != b"[" or data[ends[-1] + 1 :].strip() != b"]":
        return None
    if n > 1:  # between two strings exactly ", "
        gap_at = ends[:-1] + 1
        if not ((starts[1:] - 1 - gap_at == 2).all() and (buf[gap_at] == ord(",")).all()
                and (buf[gap_at + 1] == ord(" ")).all()):
            return None
    ctrl = np.flatnonzero(buf < 0x20)  # raw control characters inside a string: invalid JSON
    if ctrl.size:
        k = np.searchsorted(starts, ctrl, side="right") - 1
        if ((k >= 0) & (ctrl < ends[np.maximum(k, 0)])).any():
            return None
    lengths = ends - starts
    width = max(1, int(lengths.max()))
    out = np.zeros((n, width), dtype=np.uint8)
    cols = np.arange(width, dtype=np.int64)
    step = max(1, (1 << 16) // width)  # ~64 K gathered bytes (0.5 MiB of indices) at a time
    for s in range(0, n, step):
        st, ln = starts[s : s + step], lengths[s : s + step]
        mask = cols[None, :] < ln[:, None]
        out[s : s + step] = np.where(mask, buf[np.where(mask, st[:, None] + cols[None, :], 0)], 0)
    arr = out.view(f"S{width}").reshape(-1)
    try:  # the bytes must be UTF-8 (json.loads would refuse them too)
        for s in range(0, n, CHUNK):
            b"".join(arr[s : s + CHUNK].tolist()).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return IdArray(arr)


class IdIndex:
    """Positions of ids in an `IdArray`: the ids sorted, their rows, and `numpy.searchsorted` (no dict).

    ~width + 4 bytes an id on top of the ids themselves, against ~64 (plus a str) for a dict; a
    lookup of 128 ids among 200,000 takes ~20 us (a contiguous sorted copy: binary search on the
    bytes without an indirection per comparison).
    """

    def __init__(self, ids: IdArray) -> None:
        self.ids = ids
        a = ids.array
        order = np.argsort(a, kind="stable")
        self._sorted = a[order]
        self._order = order.astype(np.int32 if len(a) < 2**31 else np.int64)
        del order

    def duplicate(self) -> str | None:
        """An id present twice, or None."""
        s = self._sorted
        dup = np.flatnonzero(s[1:] == s[:-1])
        return None if dup.size == 0 else s[int(dup[0])].decode("utf-8")

    def positions(self, query: Sequence[str] | IdArray) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, found)``: each query id's position (valid where `found`)."""
        q = as_ids(query).array
        s = self._sorted
        if len(s) == 0:
            return np.zeros(len(q), dtype=np.int64), np.zeros(len(q), dtype=bool)
        width = s.dtype.itemsize
        too_long = None
        if q.dtype.itemsize > width:  # a query longer than every id here cannot be one of them
            raw = np.ascontiguousarray(q).view(np.uint8).reshape(len(q), q.dtype.itemsize)
            too_long = raw[:, width:].any(axis=1)
        qs = q.astype(s.dtype)  # truncates the too-long ones (excluded below)
        at = np.minimum(np.searchsorted(s, qs), len(s) - 1)
        found = s[at] == qs
        if too_long is not None:
            found &= ~too_long
        return self._order[at].astype(np.int64), found


__all__ = ["IdArray", "IdIndex", "as_ids", "json_chunks", "parse_json_ids"]

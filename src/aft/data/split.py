"""`DatasetSplit`: the one view of a labeled split that every part of aft consumes.

Ids, labels and class names are in memory; the inputs are in memory (built-ins) or an index read
lazily (`aft.data.lazy.LazyInputs`: image paths, text-file offsets). `take` reads a batch either way.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from aft.data.ids import IdArray, IdIndex
from aft.data.lazy import LazyInputs
from aft.errors import DataError

Modality = Literal["image", "text"]

#: ids hashed per chunk by `DatasetSplit.fingerprint` (bounded memory at millions of samples)
_ID_CHUNK = 65536


@dataclass(frozen=True)
class DatasetSplit:
    """One named split of a labeled dataset.

    Attributes:
        dataset: dataset name (e.g. ``"fashion-mnist"``).
        split: split name (``"train"``, ``"test"``, ``"val"``...).
        ids: stable, unique sample ids (strings), in order: a list, or an `aft.data.ids.IdArray`
            (one bytes array, what the lazy loaders give: no Python object per sample).
        inputs: images as a uint8 array ``(N, H, W)`` (gray) or ``(N, H, W, 3)`` (RGB),
            or texts as a list of ``str``, or a `LazyInputs` that reads them on access
            (``inputs[i]``, ``inputs[idx]``; see `take`).
        labels: int64 array ``(N,)`` with values in ``[0, len(class_names))``.
        class_names: the class names, index = label.
        modality: ``"image"`` or ``"text"``.
    """

    dataset: str
    split: str
    ids: list[str] | IdArray
    inputs: np.ndarray | list[str] | LazyInputs
    labels: np.ndarray
    class_names: list[str]
    modality: Modality
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)
    #: set by `subset` when the ids are distinct rows of a checked split (the check is skipped)
    _ids_unique: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.inputs) != n or len(self.labels) != n:
            raise DataError(
                f"{self.dataset}/{self.split}: ids ({n}), inputs ({len(self.inputs)}) and labels "
                f"({len(self.labels)}) differ in length; fix the loader or the data file"
            )
        if not self._ids_unique:  # sorted pointers, not a hash set: ~8 bytes a sample at millions of ids
            if isinstance(self.ids, IdArray):
                dup = self.ids.first_duplicate()
            else:
                dup = next((a for a, b in itertools.pairwise(sorted(self.ids)) if a == b), None)
            if dup is not None:
                raise DataError(f"{self.dataset}/{self.split}: duplicate sample id {dup!r}; sample ids must be unique")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataError(
                f"{self.dataset}/{self.split}: label {int(self.labels.max())} out of range for "
                f"{len(self.class_names)} classes; labels must be integers in [0, {len(self.class_names) - 1}]"
            )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_lazy(self) -> bool:
        """True when the inputs are read from disk on access (`LazyInputs`)."""
        return isinstance(self.inputs, LazyInputs)

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray | list[str]:
        """The inputs at `indices` as a batch: a uint8 array (images) or a list of texts."""
        idx = np.asarray(indices, dtype=np.int64)
        if isinstance(self.inputs, np.ndarray):
            return self.inputs[idx]
        if isinstance(self.inputs, LazyInputs):
            return self.inputs.take(idx)
        return [self.inputs[int(i)] for i in idx]

    def text_lengths(self) -> np.ndarray:
        """Characters per text (for length-sorted batches), without keeping lazy texts in memory."""
        if isinstance(self.inputs, LazyInputs):
            return self.inputs.lengths()
        return np.fromiter((len(t) for t in self.inputs), dtype=np.int64, count=len(self))

    def materialize(self) -> DatasetSplit:
        """The same split with every input read into memory (itself when already in memory)."""
        if not isinstance(self.inputs, LazyInputs):
            return self
        ids = self.ids if isinstance(self.ids, IdArray) else list(self.ids)
        return DatasetSplit(self.dataset, self.split, ids, self.inputs.materialize(), self.labels,
                            list(self.class_names), self.modality)

    def subset(self, indices: Sequence[int] | np.ndarray, split: str | None = None) -> DatasetSplit:
        """A new split holding the samples at `indices` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        if isinstance(self.inputs, np.ndarray):
            inputs: np.ndarray | list[str] | LazyInputs = self.inputs[idx]
        elif isinstance(self.inputs, LazyInputs):
            inputs = self.inputs.select(idx)
        else:
            inputs = [self.inputs[i] for i in idx]
        return DatasetSplit(
            dataset=self.dataset,
            split=split or self.split,
            ids=self.ids[idx] if isinstance(self.ids, IdArray) else [self.ids[i] for i in idx],
            inputs=inputs,
            labels=self.labels[idx],
            class_names=list(self.class_names),
            modality=self.modality,
            _ids_unique=bool(np.unique(idx).size == idx.size),
        )

    def index_of(self, ids: Sequence[str]) -> np.ndarray:
        """Positions of `ids` in this split; raises `DataError` naming the first unknown id."""
        if isinstance(self.ids, IdArray):
            pos, found = IdIndex(self.ids).positions(ids)
            if not found.all():
                raise DataError(f"{self.dataset}/{self.split}: unknown sample id {ids[int(np.argmin(found))]!r}")
            return pos
        lookup = {sid: i for i, sid in enumerate(self.ids)}
        try:
            return np.fromiter((lookup[i] for i in ids), dtype=np.int64, count=len(ids))
        except KeyError as exc:
            raise DataError(f"{self.dataset}/{self.split}: unknown sample id {exc.args[0]!r}") from None

    def fingerprint(self) -> str:
        """sha256 over ids, inputs, labels and class names: changes iff the content changes (lazy
        inputs: their files' identity, see `aft.data.lazy`, so nothing is decoded)."""
        if self._fingerprint:
            return self._fingerprint[0]
        h = hashlib.sha256()
        h.update(self.modality.encode())
        h.update("\x1f".join(self.class_names).encode())
        chunk = 4096 if isinstance(self.ids, IdArray) else _ID_CHUNK
        for s in range(0, len(self.ids), chunk):  # the bytes of "\x1e".join(ids), without one big copy
            if isinstance(self.ids, IdArray):  # the same bytes, without decoding
                h.update((b"\x1e" if s else b"") + self.ids.joined(b"\x1e", s, s + chunk))
            else:
                h.update((b"\x1e" if s else b"") + "\x1e".join(self.ids[s : s + chunk]).encode())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        if isinstance(self.inputs, LazyInputs):
            self.inputs.signature(h)
        elif isinstance(self.inputs, np.ndarray):
            h.update(str(self.inputs.shape).encode() + str(self.inputs.dtype).encode())
            h.update(np.ascontiguousarray(self.inputs).tobytes())
        else:
            for text in self.inputs:
                h.update(text.encode("utf-8", "surrogatepass"))
                h.update(b"\x00")
        digest = h.hexdigest()
        self._fingerprint.append(digest)
        return digest

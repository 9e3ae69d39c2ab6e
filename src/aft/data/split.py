"""`DatasetSplit`: the one in-memory view of a labeled split that every part of aft consumes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from aft.errors import DataError

Modality = Literal["image", "text"]


@dataclass(frozen=True)
class DatasetSplit:
    """One named split of a labeled dataset.

    Attributes:
        dataset: dataset name (e.g. ``"fashion-mnist"``).
        split: split name (``"train"``, ``"test"``, ``"val"``...).
        ids: stable, unique sample ids (strings), in order.
        inputs: images as a uint8 array ``(N, H, W)`` (gray) or ``(N, H, W, 3)`` (RGB),
            or texts as a list of ``str``.
        labels: int64 array ``(N,)`` with values in ``[0, len(class_names))``.
        class_names: the class names, index = label.
        modality: ``"image"`` or ``"text"``.
    """

    dataset: str
    split: str
    ids: list[str]
    inputs: np.ndarray | list[str]
    labels: np.ndarray
    class_names: list[str]
    modality: Modality
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.inputs) != n or len(self.labels) != n:
            raise DataError(
                f"{self.dataset}/{self.split}: ids ({n}), inputs ({len(self.inputs)}) and labels "
                f"({len(self.labels)}) differ in length; fix the loader or the data file"
            )
        if len(set(self.ids)) != n:
            seen: set[str] = set()
            dup = next(i for i in self.ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
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

    def subset(self, indices: Sequence[int] | np.ndarray, split: str | None = None) -> DatasetSplit:
        """A new split holding the samples at `indices` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        if isinstance(self.inputs, np.ndarray):
            inputs: np.ndarray | list[str] = self.inputs[idx]
        else:
            inputs = [self.inputs[i] for i in idx]
        return DatasetSplit(
            dataset=self.dataset,
            split=split or self.split,
            ids=[self.ids[i] for i in idx],
            inputs=inputs,
            labels=self.labels[idx],
            class_names=list(self.class_names),
            modality=self.modality,
        )

    def index_of(self, ids: Sequence[str]) -> np.ndarray:
        """Positions of `ids` in this split; raises `DataError` naming the first unknown id."""
        lookup = {sid: i for i, sid in enumerate(self.ids)}
        try:
            return np.fromiter((lookup[i] for i in ids), dtype=np.int64, count=len(ids))
        except KeyError as exc:
            raise DataError(f"{self.dataset}/{self.split}: unknown sample id {exc.args[0]!r}") from None

    def fingerprint(self) -> str:
        """sha256 over ids, inputs, labels and class names: changes iff the content changes."""
        if self._fingerprint:
            return self._fingerprint[0]
        h = hashlib.sha256()
        h.update(self.modality.encode())
        h.update("\x1f".join(self.class_names).encode())
        h.update("\x1e".join(self.ids).encode())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        if isinstance(self.inputs, np.ndarray):
            h.update(str(self.inputs.shape).encode() + str(self.inputs.dtype).encode())
            h.update(np.ascontiguousarray(self.inputs).tobytes())
        else:
            for text in self.inputs:
                h.update(text.encode("utf-8", "surrogatepass"))
                h.update(b"\x00")
        digest = h.hexdigest()
        self._fingerprint.append(digest)
        return digest

"""Split preparation for training: load by name, subsample, carve the validation split, fetch features."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from aft.data.split import DatasetSplit
from aft.errors import ConfigError, DataError, FeatureStoreError

logger = logging.getLogger(__name__)


def load_named_split(dataset: str | None, split: str, options: dict[str, Any] | None = None) -> DatasetSplit:
    """`aft.data.load_split(dataset, split, **options)`, with a clear error when no dataset is configured."""
    if not dataset:
        raise ConfigError("no dataset given; set `dataset` in the config (or pass train_split= in Python)")
    from aft import data

    loader = getattr(data, "load_split", None)
    if loader is None:  # pragma: no cover - the data package always provides it once installed
        raise ConfigError("aft.data.load_split is unavailable in this installation")
    return loader(dataset, split, **(options or {}))


def subsample(split: DatasetSplit, n: int | None, seed: int) -> DatasetSplit:
    """Stratified subsample of `n` samples (`aft.data.stratified_subsample`); the whole split when
    `n` is None or not smaller (a larger `n` is logged as a warning: the run uses fewer samples)."""
    if n is None or n >= len(split):
        if n is not None and n > len(split):
            logger.warning("%s/%s has %d samples, fewer than the limit %d: using all of them",
                           split.dataset, split.split, len(split), n)
        return split
    from aft.data import stratified_subsample

    return stratified_subsample(split, n, seed)


def carve_validation(split: DatasetSplit, fraction: float, seed: int) -> tuple[DatasetSplit, DatasetSplit | None]:
    """Seeded (train, val) split of the training data; val is None when `fraction` is 0."""
    if fraction <= 0:
        return split, None
    from aft import data

    fn = getattr(data, "train_val_split", None)
    if fn is not None:
        return fn(split, fraction, seed)
    n_val = max(1, int(round(fraction * len(split))))
    if n_val >= len(split):
        raise DataError(f"val_fraction {fraction} leaves no training samples out of {len(split)}")
    perm = np.random.default_rng(seed).permutation(len(split))
    return split.subset(np.sort(perm[n_val:]), "train"), split.subset(np.sort(perm[:n_val]), "val")


def check_features_cover(features: object, ids: Sequence[str], probe: int = 512) -> None:
    """Fail early when the feature store lacks ids of the training split (probes evenly spaced ids)."""
    if not ids:
        return
    pos = np.unique(np.linspace(0, len(ids) - 1, num=min(probe, len(ids))).astype(np.int64))
    try:
        arr = features.get([ids[i] for i in pos])  # type: ignore[attr-defined]
    except FeatureStoreError as exc:
        raise FeatureStoreError(f"the feature store does not match this dataset split: {exc}") from None
    if arr.shape != (len(pos), features.dim):  # type: ignore[attr-defined]
        raise FeatureStoreError(f"feature store returned shape {arr.shape}, expected ({len(pos)}, {features.dim})")  # type: ignore[attr-defined]


class LazyStudentInputs:
    """Student inputs of a lazy split, read and preprocessed per batch (what `_preprocess` gives for
    lazy splits instead of one tensor of the whole split): ``x[idx]`` and ``x[a:b]`` are tensors."""

    def __init__(self, student: Any, split: DatasetSplit) -> None:
        self.student, self.split = student, split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            idx = np.arange(len(self.split), dtype=np.int64)[key]
        else:
            idx = np.asarray(key.cpu() if hasattr(key, "cpu") else key, dtype=np.int64).reshape(-1)
        return self.student.preprocess(self.split.take(idx))


def read_train_batch(split: DatasetSplit, student: Any, policy: Any, key: tuple[np.ndarray, Any]) -> tuple[np.ndarray, Any]:
    """``(positions, preprocessed inputs)`` of one local micro-batch: read, augmented as views ``key[1]``
    (when a policy is given), preprocessed by the student; runs in a DataLoader worker."""
    idx, views = key
    raw = split.take(idx)
    if policy is not None:
        raw = policy.apply(raw, [split.ids[int(i)] for i in idx], views)
    return idx, student.preprocess(raw)


class TrainBatches:
    """The local micro-batches of training steps ``start..stop`` in order, as ``(positions, views)``
    keys: the same batches the training loop forms (epoch permutations from ``(seed, epoch)``, views
    from ``(seed, step, position)``), computed on demand so that workers can read ahead."""

    def __init__(self, *, n: int, seed: int, start: int, stop: int, steps_per_epoch: int, global_bs: int,
                 micro_bs: int, local_bs: int, rank: int, accum: int, views: int | None) -> None:
        self.n, self.seed, self.start, self.stop = n, seed, start, stop
        self.steps_per_epoch, self.global_bs, self.micro_bs, self.local_bs = steps_per_epoch, global_bs, micro_bs, local_bs
        self.rank, self.accum, self.views = rank, accum, views
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.accum

    def __getitem__(self, k: int) -> tuple[np.ndarray, Any]:
        if not 0 <= k < len(self):
            raise IndexError(k)
        from aft.training.loop import epoch_permutation

        step, micro = divmod(k, self.accum)
        step += self.start
        epoch, pos = divmod(step, self.steps_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, epoch_permutation(self.n, self.seed, epoch).numpy())
        gidx_step = self._perm[1][pos * self.global_bs : (pos + 1) * self.global_bs]
        gidx = gidx_step[micro * self.micro_bs : (micro + 1) * self.micro_bs]
        lidx = gidx[self.rank * self.local_bs : (self.rank + 1) * self.local_bs]
        views = None
        if self.views is not None:
            from aft.augment.views import draw_views

            v = draw_views(self.seed, step, len(gidx_step), self.views)[micro * self.micro_bs : (micro + 1) * self.micro_bs]
            views = v[self.rank * self.local_bs : (self.rank + 1) * self.local_bs]
        return lidx, views

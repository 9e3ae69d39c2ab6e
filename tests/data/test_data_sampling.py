"""stratified_subsample and train_val_split: deterministic, stratified, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from aft.data import DatasetSplit, load_split, stratified_subsample, train_val_split
from aft.data.sampling import allocate
from aft.errors import DataError


def _toy(counts: list[int]) -> DatasetSplit:
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(counts)]).astype(np.int64)
    n = len(labels)
    return DatasetSplit("toy", "train", [f"s{i}" for i in range(n)], [f"t{i}" for i in range(n)], labels,
                        [f"c{k}" for k in range(len(counts))], "text")


def test_allocate_sums_and_bounds() -> None:
    counts = np.array([50, 30, 15, 5])
    for n in range(4, 101):
        take = allocate(counts, n, min_per_class=1)
        assert take.sum() == n and (take >= 1).all() and (take <= counts).all()
    assert allocate(counts, 20).tolist() == [10, 6, 3, 1]


def test_subsample_is_deterministic_and_stratified() -> None:
    ds = _toy([500, 300, 150, 50])
    a = stratified_subsample(ds, 100, seed=3)
    b = stratified_subsample(ds, 100, seed=3)
    c = stratified_subsample(ds, 100, seed=4)
    assert a.ids == b.ids and a.ids != c.ids
    assert np.bincount(a.labels).tolist() == [50, 30, 15, 5]
    assert len(set(a.ids)) == 100 and set(a.ids) <= set(ds.ids)
    assert a.ids == sorted(a.ids, key=ds.ids.index)  # original order kept
    tiny = stratified_subsample(_toy([97, 1, 1, 1]), 4, seed=0)
    assert np.bincount(tiny.labels).tolist() == [1, 1, 1, 1]


def test_subsample_errors() -> None:
    ds = _toy([5, 5])
    with pytest.raises(DataError, match="cannot subsample 11 of 10"):
        stratified_subsample(ds, 11, seed=0)
    with pytest.raises(DataError, match="less than the 2 classes"):
        stratified_subsample(ds, 1, seed=0)


def test_train_val_split_is_deterministic_disjoint_stratified() -> None:
    ds = _toy([400, 100])
    tr, va = train_val_split(ds, 0.2, seed=1)
    tr2, va2 = train_val_split(ds, 0.2, seed=1)
    assert tr.ids == tr2.ids and va.ids == va2.ids
    assert len(va) == 100 and len(tr) == 400 and not set(tr.ids) & set(va.ids)
    assert sorted(tr.ids + va.ids) == sorted(ds.ids)
    assert np.bincount(va.labels).tolist() == [80, 20]
    assert va.split == "val" and tr.split == "train"
    assert train_val_split(ds, 0.2, seed=2)[1].ids != va.ids


def test_train_val_split_errors() -> None:
    with pytest.raises(DataError, match="val_fraction must be in"):
        train_val_split(_toy([5, 5]), 1.5)
    with pytest.raises(DataError, match="empty train or validation"):
        train_val_split(_toy([1, 1]), 0.1)


def test_digits_split() -> None:
    tr = load_split("digits", "train")
    te = load_split("digits", "test")
    assert len(tr) + len(te) == 1797 and len(te) == 359
    assert not set(tr.ids) & set(te.ids)
    assert tr.inputs.dtype == np.uint8 and tr.inputs.shape[1:] == (8, 8) and tr.inputs.max() == 255
    counts = np.bincount(te.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    assert load_split("digits", "test").ids == te.ids
    assert load_split("digits", "test", seed=1).ids != te.ids

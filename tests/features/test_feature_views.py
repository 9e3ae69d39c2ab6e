"""Feature stores of augmented views: view k holds the teacher run on view k, fingerprinted and resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from aft.augment import build_policy, policy_tag
from aft.data.split import DatasetSplit
from aft.errors import FeatureStoreError, FingerprintMismatchError
from aft.features import FeatureStore, extract, is_complete, open_features
from aft.features.store import ARRAY, IDS, MANIFEST, PROGRESS
from aft.teachers import CallableTeacher
from aft.teachers.base import ModuleTeacher


def image_split(n: int = 21) -> DatasetSplit:
    rng = np.random.default_rng(0)
    return DatasetSplit("toy-img", "train", [f"img-{i:03d}" for i in rng.permutation(n)],
                        rng.integers(0, 256, size=(n, 12, 12), dtype=np.uint8), rng.integers(0, 3, size=n),
                        ["a", "b", "c"], "image")


def text_split(n: int = 17) -> DatasetSplit:
    rng = np.random.default_rng(1)
    texts = [" ".join(f"w{int(w)}" for w in rng.integers(0, 30, size=int(k))) for k in rng.integers(2, 12, size=n)]
    return DatasetSplit("toy-txt", "train", [f"t{i}" for i in range(n)], texts, rng.integers(0, 2, size=n),
                        ["x", "y"], "text")


def conv_teacher() -> ModuleTeacher:
    """A fixed random conv + pooling (a tiny stand-in for a real image teacher)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    return ModuleTeacher(net, dim=32, name="conv", version="1")


def text_teacher(fn=None) -> CallableTeacher:
    def counts(xs):
        return np.array([[len(t.split()), len(t), t.count("1"), t.count("2")] for t in xs], dtype=np.float32)

    return CallableTeacher(fn or counts, dim=4, modality="text", name="counts")


def test_each_view_holds_the_teacher_on_that_view(tmp_path):
    split, teacher = image_split(), conv_teacher()
    policy = build_policy("image-basic")
    (path,) = extract(teacher, split, tmp_path, views=4, augmentation="image-basic", batch_size=8, progress=False)
    store = open_features(tmp_path, ["conv"], split, views=4, augmentation="image-basic")
    assert store.num_views == 4 and path.name.endswith(policy_tag(policy, 4))
    ids = list(np.random.default_rng(2).permutation(split.ids))
    raw = split.inputs[split.index_of(ids)]
    for k in range(4):
        expected = teacher.encode(policy.apply(raw, ids, [k] * len(ids)))  # independent computation
        np.testing.assert_allclose(store.get(ids, [k] * len(ids)), expected, rtol=2e-3, atol=2e-3)
    assert not np.allclose(store.get(ids, [1] * len(ids)), store.get(ids, [0] * len(ids)), atol=1e-2)
    # mixed views in one call pick per-sample rows
    mixed = np.arange(len(ids)) % 4
    rows = np.stack([store.get(ids, [k] * len(ids)) for k in range(4)], axis=1)
    np.testing.assert_array_equal(store.get(ids, mixed), rows[np.arange(len(ids)), mixed])
    m = json.loads((path / MANIFEST).read_text())
    assert m["num_views"] == 4 and m["augmentation"] == policy.config() and m["shape"] == [len(split), 4, 32]


def test_views_store_is_never_picked_up_silently(tmp_path):
    split = image_split()
    extract(conv_teacher(), split, tmp_path, views=3, progress=False)  # default policy for images
    assert open_features(tmp_path, ["conv"], split, views=True).num_views == 3
    with pytest.raises(FeatureStoreError, match="no features"):
        open_features(tmp_path, ["conv"], split)  # the clean store was not extracted
    with pytest.raises(FingerprintMismatchError, match="num_views is 3 in the store but 5"):
        open_features(tmp_path, ["conv"], split, views=5)
    with pytest.raises(FingerprintMismatchError, match="augmentation policy"):
        open_features(tmp_path, ["conv"], split, views=3, augmentation=build_policy("image-basic", pad=4))
    # the clean store lives next to it and is found separately
    extract(conv_teacher(), split, tmp_path, progress=False)
    assert open_features(tmp_path, ["conv"], split).num_views == 1
    assert open_features(tmp_path, ["conv"], split, views=3, augmentation="image-basic").num_views == 3


def test_default_policy_by_modality_is_recorded(tmp_path):
    split = text_split()
    (path,) = extract(text_teacher(), split, tmp_path, views=3, batch_size=5, progress=False)
    store = FeatureStore.open(path)
    assert store.manifest["augmentation"]["policy"] == "text-word-dropout" and store.info()["augmentation"]
    policy = build_policy("text-word-dropout")
    for k in range(3):
        want = text_teacher().encode(policy.apply(split.inputs, split.ids, [k] * len(split)))
        np.testing.assert_array_equal(store.get(split.ids, [k] * len(split)), want)


class Kill(Exception):
    pass


def test_views_extraction_resumes_byte_identical(tmp_path):
    split = text_split(n=19)  # 4 batches of 5 per view, 3 views -> 12 (view, batch) units
    ref = extract(text_teacher(), split, tmp_path / "ref", views=3, batch_size=5, progress=False)[0]

    def kill(done, total):
        assert total == 12
        if done == 6:  # in the middle of view 1
            raise Kill

    with pytest.raises(Kill):
        extract(text_teacher(), split, tmp_path / "run", views=3, batch_size=5, progress=False,
                checkpoint_every_s=0, on_batch=kill)
    run_dir = tmp_path / "run" / ref.relative_to(tmp_path / "ref")
    assert not is_complete(run_dir) and (run_dir / PROGRESS).is_file()
    seen = []

    def counting(xs):
        seen.extend(xs)
        return text_teacher().encode(xs)

    (resumed,) = extract(text_teacher(counting), split, tmp_path / "run", views=3, batch_size=5, progress=False)
    assert resumed == run_dir and len(seen) == 19 * 3 - (19 + 5 * 2)  # only the remaining units ran
    for name in (ARRAY, IDS):
        assert (resumed / name).read_bytes() == (ref / name).read_bytes()
    # a complete store is reused, not re-extracted
    seen.clear()
    extract(text_teacher(counting), split, tmp_path / "run", views=3, batch_size=5, progress=False)
    assert not seen

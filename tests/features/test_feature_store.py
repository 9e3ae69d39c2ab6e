"""FeatureStore checks (fingerprint, dim, ids, NaN, truncation, checksum), views, and id-aligned concatenation."""

from __future__ import annotations

import numpy as np
import pytest
from test_feature_extract import (
    image_features,
    image_split,
    img_teacher,
    text_features,
    text_split,
    txt_teacher,
)

from aft.data.split import DatasetSplit
from aft.errors import FeatureStoreError, FingerprintMismatchError, NonFiniteError
from aft.features import (
    ConcatenatedFeatures,
    FeatureStore,
    FeatureStoreWriter,
    InMemoryFeatures,
    TeacherFeatureSource,
    extract,
    open_features,
    store_path,
)
from aft.features.store import ARRAY
from aft.teachers import CallableTeacher


@pytest.fixture
def stored(tmp_path):
    split = image_split()
    (path,) = extract(img_teacher(), split, tmp_path, batch_size=6, dtype="float32", progress=False)
    return split, path


def test_store_implements_the_protocol_and_layout(stored, tmp_path):
    split, path = stored
    store = FeatureStore.open(path)
    assert isinstance(store, TeacherFeatureSource)
    assert store.column_ranges == {"proj": (0, 6)}
    assert path == store_path(tmp_path, "proj", split.dataset, "train", split.fingerprint())
    assert path.name == f"train-{split.fingerprint()[:12]}"


def test_store_pickles_by_path_not_content(stored):
    import pickle

    split, path = stored
    store = FeatureStore.open(path)
    blob = pickle.dumps(store)
    assert len(blob) < 500
    np.testing.assert_array_equal(pickle.loads(blob).get(split.ids[::-1]), store.get(split.ids[::-1]))


def test_verify_names_the_field_that_differs(stored):
    split, path = stored
    store = FeatureStore.open(path)
    other_content = image_split(seed=5)  # same dataset/split names and size, other pixels
    with pytest.raises(FingerprintMismatchError, match="dataset fingerprint"):
        store.verify(other_content)
    renamed = DatasetSplit("other-ds", "train", split.ids, split.inputs, split.labels, split.class_names, "image")
    with pytest.raises(FingerprintMismatchError, match="dataset is 'toy-img' in the store but 'other-ds'"):
        store.verify(renamed)
    with pytest.raises(FingerprintMismatchError, match="split is 'train'"):
        store.verify(split.subset(range(len(split)), split="test"))
    with pytest.raises(FingerprintMismatchError, match="teacher is 'proj'"):
        store.verify(split, "other")
    wide = CallableTeacher(image_features, dim=7, modality="image", name="proj", version="1")
    with pytest.raises(FingerprintMismatchError, match="dim is 6 in the store but 7"):
        store.verify(split, wide)
    store.verify(split, img_teacher())  # the real teacher passes


def test_open_features_refuses_other_data_and_says_how_to_extract(stored, tmp_path):
    split, _ = stored
    with pytest.raises(FeatureStoreError, match=r"no features for teacher 'proj' on toy-img/train .*run `aft extract --teacher proj --dataset toy-img --split train"):
        open_features(tmp_path, ["proj"], image_split(seed=9))
    with pytest.raises(FeatureStoreError, match="teacher 'nope'"):
        open_features(tmp_path, ["nope"], split)
    with pytest.raises(FingerprintMismatchError, match="dim"):
        open_features(tmp_path, [CallableTeacher(image_features, dim=7, modality="image", name="proj")], split)


def test_missing_ids_and_bad_views(stored):
    split, path = stored
    store = FeatureStore.open(path)
    with pytest.raises(FeatureStoreError, match="'ghost'"):
        store.get([split.ids[0], "ghost"])
    with pytest.raises(FeatureStoreError, match="view index out of range"):
        store.get(split.ids[:2], views=[0, 1])


def test_nan_in_the_file_is_caught_at_open(stored):
    split, path = stored
    arr = np.memmap(path / ARRAY, dtype=np.float32, mode="r+", shape=(len(split), 6))
    arr[3, 1] = np.nan
    arr.flush()
    del arr
    with pytest.raises(NonFiniteError, match=split.ids[3]):
        FeatureStore.open(path)


def test_truncated_array_names_the_file(stored):
    _, path = stored
    with open(path / ARRAY, "r+b") as f:
        f.truncate((path / ARRAY).stat().st_size - 10)
    with pytest.raises(FeatureStoreError, match=r"features\.bin has .* bytes, expected .*truncated"):
        FeatureStore.open(path)


def test_checksum_detects_a_flipped_byte(stored):
    _, path = stored
    data = bytearray((path / ARRAY).read_bytes())
    data[0] ^= 0x01  # still a finite float32
    (path / ARRAY).write_bytes(bytes(data))
    store = FeatureStore.open(path)
    with pytest.raises(FeatureStoreError, match="sha256"):
        store.verify_checksum()


def test_missing_store_and_bad_manifest(tmp_path):
    with pytest.raises(FeatureStoreError, match="no feature store"):
        FeatureStore.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(FeatureStoreError, match="unreadable"):
        FeatureStore.open(tmp_path)


def _write_store(path, ids, feats, name, views=1):
    plan = {"teacher": name}
    w = FeatureStoreWriter(path, plan, count=len(ids), num_views=views, dim=feats.shape[-1], dtype="float32")
    # write in a scrambled batch order to exercise positioned writes
    order = np.random.default_rng(len(name)).permutation(len(ids))
    for chunk in np.array_split(order, 3):
        w.write(chunk, feats[chunk])
    w.finalize(ids, {"teacher": {"name": name, "version": "1"}, "dataset": {"name": "d", "split": "s"}})
    return FeatureStore.open(path)


def test_concatenation_aligns_ids_across_stores_written_in_different_orders(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"id{i}" for i in range(17)]
    fa = rng.normal(size=(17, 3)).astype(np.float32)
    fb = rng.normal(size=(17, 5)).astype(np.float32)
    perm = rng.permutation(17)
    a = _write_store(tmp_path / "a", ids, fa, "a")
    b = _write_store(tmp_path / "b", [ids[i] for i in perm], fb[perm], "bb")  # rows in another order
    cat = ConcatenatedFeatures({"a": a, "b": b})
    assert isinstance(cat, TeacherFeatureSource)
    assert cat.dim == 8 and cat.column_ranges == {"a": (0, 3), "b": (3, 8)}
    query = [ids[i] for i in rng.permutation(17)[:9]]
    idx = [ids.index(q) for q in query]
    np.testing.assert_array_equal(cat.get(query), np.concatenate([fa[idx], fb[idx]], axis=1))
    # mixing with an in-memory source works the same
    mixed = ConcatenatedFeatures({"a": a, "mem": InMemoryFeatures(ids, fb)})
    np.testing.assert_array_equal(mixed.get(query)[:, 3:], fb[idx])


def test_open_features_concatenates_teachers_by_id(tmp_path):
    split = text_split()
    extract([txt_teacher(), txt_teacher(lambda xs: -text_features(xs), name="neg")], split, tmp_path,
            batch_size=4, dtype="float32", progress=False)
    feats = open_features(tmp_path, ["neg", "counts"], split)
    assert feats.column_ranges == {"neg": (0, 6), "counts": (6, 12)} and feats.num_views == 1
    q = split.ids[::-3]
    ref = text_features([split.inputs[i] for i in split.index_of(q)])
    np.testing.assert_array_equal(feats.get(q), np.concatenate([-ref, ref], axis=1))
    with pytest.raises(FeatureStoreError, match="augmented-view"):
        open_features(tmp_path, ["counts"], split, views=True)


def test_views_array_is_n_v_d_and_get_picks_views(tmp_path):
    ids = ["p", "q", "r"]
    feats = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    w = FeatureStoreWriter(tmp_path, {"x": 1}, count=3, num_views=4, dim=2, dtype="float16")
    for v in range(4):  # per-view writes
        w.write(np.array([2, 0, 1]), feats[[2, 0, 1], v], view=v)
    w.finalize(ids, {"teacher": {"name": "t", "version": "1"}, "dataset": {}, "augmentation": {"policy": "test"}})
    store = FeatureStore.open(tmp_path)
    assert store.num_views == 4 and store.array.shape == (3, 4, 2)
    np.testing.assert_array_equal(store.get(["r", "p"], views=[3, 1]), feats[[2, 0], [3, 1]])
    np.testing.assert_array_equal(store.get(["q"]), feats[[1], 0])

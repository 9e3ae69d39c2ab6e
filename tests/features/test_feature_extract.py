"""Streaming extraction: round trip, deterministic resume after a kill, NaN/overflow detection, reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aft.data.split import DatasetSplit
from aft.errors import ConfigError, FeatureStoreError, NonFiniteError, OutputExistsError
from aft.features import FeatureStore, batch_order, extract, is_complete
from aft.features.store import ARRAY, IDS, MANIFEST, PROGRESS
from aft.teachers import CallableTeacher

W = np.random.default_rng(1).normal(size=(64, 6)).astype(np.float32)


def image_split(n: int = 23, seed: int = 0, dataset: str = "toy-img") -> DatasetSplit:
    rng = np.random.default_rng(seed)
    return DatasetSplit(
        dataset=dataset,
        split="train",
        ids=[f"img-{i:03d}" for i in rng.permutation(n)],
        inputs=rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8),
        labels=rng.integers(0, 3, size=n),
        class_names=["a", "b", "c"],
        modality="image",
    )


def text_split(n: int = 29, seed: int = 0) -> DatasetSplit:
    rng = np.random.default_rng(seed)
    texts = ["".join(rng.choice(list("abcdef "), size=int(k))) for k in rng.integers(1, 40, size=n)]
    return DatasetSplit("toy-txt", "train", [f"t{i}" for i in range(n)], texts, rng.integers(0, 2, size=n), ["x", "y"], "text")


def image_features(images: np.ndarray) -> np.ndarray:
    """The reference computation: a fixed projection of the pixels (independent of the store)."""
    return (images.reshape(len(images), -1).astype(np.float32) / 255.0) @ W


def matmul_tolerance(images: np.ndarray, dtype: str) -> np.ndarray:
    """Bound on |stored - image_features(images)| when the store computed the same product in other batches.

    Each float32 dot product over K terms is within gamma_K * (|x| @ |W|) of the exact value
    (gamma_K = K u / (1 - K u), u = 2**-24), whatever the summation order or BLAS kernel, so two orders
    differ by at most twice that. A float16 store then rounds both to the nearest float16: one more
    float16 spacing at that magnitude.
    """
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    k, u = x.shape[1], 2.0**-24
    tol = 2 * (k * u / (1 - k * u)) * (np.abs(x).astype(np.float64) @ np.abs(W).astype(np.float64))
    if dtype == "float16":
        exact = x.astype(np.float64) @ W.astype(np.float64)
        tol = tol + np.spacing(np.abs(exact).astype(np.float16)).astype(np.float64)
    return tol


def text_features(texts) -> np.ndarray:
    out = np.zeros((len(texts), 6), dtype=np.float32)
    for i, t in enumerate(texts):
        out[i, 0] = len(t)
        out[i, 1:] = [t.count(c) for c in "abcde"]
    return out


class Counting:
    """Wraps a function, counting calls and samples."""

    def __init__(self, fn):
        self.fn, self.calls, self.samples = fn, 0, 0

    def __call__(self, xs):
        self.calls += 1
        self.samples += len(xs)
        return self.fn(xs)


def img_teacher(fn=image_features, name="proj", version="1") -> CallableTeacher:
    return CallableTeacher(fn, dim=6, modality="image", name=name, version=version)


def txt_teacher(fn=text_features, name="counts") -> CallableTeacher:
    return CallableTeacher(fn, dim=6, modality="text", name=name)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip_by_shuffled_ids_equals_in_memory(tmp_path, dtype):
    split = image_split()
    (path,) = extract(img_teacher(), split, tmp_path, batch_size=5, dtype=dtype, progress=False)
    store = FeatureStore.open(path)
    assert (store.count, store.dim, store.num_views, store.dtype) == (len(split), 6, 1, dtype)
    ids = list(np.random.default_rng(3).permutation(split.ids))
    expected = image_features(split.inputs[split.index_of(ids)]).astype(dtype).astype(np.float32)
    got = store.get(ids)
    assert got.dtype == np.float32 and got.shape == (len(ids), 6)
    # the store encoded batches of 5 in its own order: equal up to float32 summation order (not bit-equal)
    tol = matmul_tolerance(split.inputs[split.index_of(ids)], dtype)
    assert np.all(np.abs(got.astype(np.float64) - expected) <= tol), np.max(np.abs(got - expected) - tol)
    assert np.max(tol) < 1e-2  # the bound is tight enough to catch a swapped row
    # manifest content
    m = json.loads((path / MANIFEST).read_text())
    assert m["dataset"]["fingerprint"] == split.fingerprint()
    assert m["teacher"]["name"] == "proj" and m["count"] == len(split) and m["shape"] == [len(split), 1, 6]
    assert json.loads((path / IDS).read_text()) == split.ids
    assert not (path / PROGRESS).exists()
    store.verify(split)
    store.verify_checksum()


def test_text_batches_sorted_by_length_and_written_back_in_place(tmp_path):
    split = text_split()
    order = batch_order(split)
    lengths = [len(split.inputs[i]) for i in order]
    assert lengths == sorted(lengths)
    seen = []
    teacher = txt_teacher(lambda xs: (seen.append([len(x) for x in xs]), text_features(xs))[1])
    (path,) = extract(teacher, split, tmp_path, batch_size=4, dtype="float32", progress=False)
    assert all(b == sorted(b) for b in seen) and sum(map(len, seen)) == len(split)
    np.testing.assert_array_equal(FeatureStore.open(path).get(split.ids), text_features(split.inputs))


class Kill(Exception):
    pass


@pytest.mark.parametrize("kill_after", [1, 4])
def test_killed_and_resumed_store_is_byte_identical(tmp_path, kill_after):
    split = text_split(n=37)
    ref_dir = extract(txt_teacher(), split, tmp_path / "ref", batch_size=5, progress=False)[0]

    def kill(done, total):
        if done == kill_after:
            raise Kill

    with pytest.raises(Kill):
        extract(txt_teacher(), split, tmp_path / "run", batch_size=5, progress=False, checkpoint_every_s=0, on_batch=kill)
    run_dir = ref_dir.parents[3] / "run" / ref_dir.relative_to(tmp_path / "ref")
    assert not is_complete(run_dir) and (run_dir / PROGRESS).is_file()
    with pytest.raises(FeatureStoreError, match="interrupted"):
        FeatureStore.open(run_dir)
    assert json.loads((run_dir / PROGRESS).read_text())["batches_done"] == kill_after

    counting = Counting(text_features)
    (resumed,) = extract(txt_teacher(counting), split, tmp_path / "run", batch_size=5, progress=False)
    assert resumed == run_dir
    assert counting.samples == len(split) - 5 * kill_after  # only the remaining batches were encoded
    for name in (ARRAY, IDS):
        assert (resumed / name).read_bytes() == (ref_dir / name).read_bytes()
    m_ref, m_run = (json.loads((d / MANIFEST).read_text()) for d in (ref_dir, resumed))
    m_ref.pop("extraction"), m_run.pop("extraction")
    assert m_ref == m_run


def test_resume_with_other_batch_size_restarts_from_scratch(tmp_path):
    split = image_split(n=20)

    def kill(done, total):
        if done == 2:
            raise Kill

    with pytest.raises(Kill):
        extract(img_teacher(), split, tmp_path, batch_size=4, progress=False, checkpoint_every_s=0, on_batch=kill)
    counting = Counting(image_features)
    extract(img_teacher(counting), split, tmp_path, batch_size=6, progress=False)
    assert counting.samples == len(split)


def test_complete_store_is_reused_and_other_settings_need_overwrite(tmp_path):
    split = image_split()
    extract(img_teacher(), split, tmp_path, progress=False)
    counting = Counting(image_features)
    extract(img_teacher(counting), split, tmp_path, progress=False)
    assert counting.calls == 0
    with pytest.raises(OutputExistsError, match="--overwrite"):
        extract(img_teacher(version="2"), split, tmp_path, progress=False)
    (path,) = extract(img_teacher(version="2"), split, tmp_path, progress=False, overwrite=True)
    assert FeatureStore.open(path).manifest["teacher"]["version"] == "2"


def test_nan_features_are_refused_at_write_time_naming_the_sample(tmp_path):
    split = image_split()
    bad_id = split.ids[7]

    def nan_at_7(images):
        out = image_features(images)
        for row, img in enumerate(images):
            if np.array_equal(img, split.inputs[7]):
                out[row, 2] = np.nan
        return out

    with pytest.raises(NonFiniteError, match=bad_id):
        extract(img_teacher(nan_at_7), split, tmp_path, batch_size=4, progress=False)
    (path,) = [p for p in tmp_path.rglob("progress.json")]
    assert not is_complete(path.parent)


def test_float16_overflow_is_refused_with_the_fix(tmp_path):
    split = image_split()
    teacher = img_teacher(lambda x: image_features(x) * 1e6)
    with pytest.raises(NonFiniteError, match="float32"):
        extract(teacher, split, tmp_path, progress=False)
    (path,) = extract(teacher, split, tmp_path / "f32", dtype="float32", progress=False)
    assert np.isfinite(FeatureStore.open(path).get(split.ids)).all()


def test_wrong_modality_and_bad_output_shape_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="image teacher"):
        extract(txt_teacher(), image_split(), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="expected"):
        extract(CallableTeacher(lambda x: np.zeros((len(x), 3)), dim=6, modality="image"), image_split(), tmp_path,
                progress=False)
    with pytest.raises(ConfigError, match="dtype"):
        extract(img_teacher(), image_split(), tmp_path, dtype="int8", progress=False)


def test_empty_split_gives_an_empty_valid_store(tmp_path):
    split = image_split().subset([])
    (path,) = extract(img_teacher(), split, tmp_path, progress=False)
    store = FeatureStore.open(path)
    assert store.count == 0 and store.get([]).shape == (0, 6)

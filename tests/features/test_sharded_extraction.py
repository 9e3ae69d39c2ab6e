"""Distributed (sharded) extraction: 2 gloo processes under torchrun give the single-process features;
a rank killed mid-shard resumes its own shard on rerun; the sharded store reads like any other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from aft.data.split import DatasetSplit
from aft.errors import FeatureStoreError
from aft.features import FeatureStore, extract, is_complete
from aft.features.sharded import SHARD_DONE, SHARDS_DIR, ShardedArray, rank_batches, shard_name
from aft.features.store import ARRAY, PROGRESS
from aft.teachers import CallableTeacher

W_IMG = np.random.default_rng(1).normal(size=(64, 6)).astype(np.float32)
W_TXT = np.random.default_rng(2).normal(size=(8, 5)).astype(np.float32)


def image_split(n: int = 23) -> DatasetSplit:
    rng = np.random.default_rng(0)
    return DatasetSplit("toy-img", "train", [f"img-{i:03d}" for i in rng.permutation(n)],
                        rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8), rng.integers(0, 3, size=n),
                        ["a", "b", "c"], "image")


def text_split(n: int = 29) -> DatasetSplit:
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("abcdef "), size=int(k))) for k in rng.integers(1, 40, size=n)]
    return DatasetSplit("toy-txt", "train", [f"t{i}" for i in range(n)], texts, rng.integers(0, 2, size=n),
                        ["x", "y"], "text")


def image_features(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1).astype(np.float32) / 255.0) @ W_IMG


def text_features(texts: list[str]) -> np.ndarray:
    counts = np.array([[t.count(c) for c in "abcdef "] + [len(t)] for t in texts], dtype=np.float32)
    return counts @ W_TXT


def teachers() -> tuple[CallableTeacher, CallableTeacher]:
    return (CallableTeacher(image_features, dim=6, modality="image", name="proj-img"),
            CallableTeacher(text_features, dim=5, modality="text", name="proj-txt"))


# The worker runs on every rank under torchrun; it rebuilds the same data and teachers.
WORKER = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests_dir!r})
    from test_sharded_extraction import image_split, teachers, text_split
    from aft.features.sharded import extract_distributed, init_distributed

    store, fail_rank, fail_after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    init_distributed("cpu")
    rank = int(os.environ["RANK"])
    calls = []

    def on_batch(done, total):
        calls.append(done)
        if rank == fail_rank and done == fail_after:
            # let the other rank finish its shard first (torchrun stops it when this rank dies)
            import glob, time
            other = os.path.join(store, "**", {shards_dir!r}, {other_shard!r}, {shard_done!r})
            deadline = time.time() + 60
            while not glob.glob(other, recursive=True) and time.time() < deadline:
                time.sleep(0.05)
            raise RuntimeError("killed by the test")

    t_img, t_txt = teachers()
    try:
        extract_distributed(t_img, image_split(), store, batch_size=4, progress=False, checkpoint_every_s=0,
                            on_batch=on_batch)
        extract_distributed(t_txt, text_split(), store, batch_size=4, progress=False, partition="strided")
        extract_distributed(t_img, image_split(), store, batch_size=4, progress=False, views=3)
        extract_distributed(t_txt, text_split(), store, batch_size=5, progress=False, views=2, partition="strided")
    finally:
        with open(os.path.join(store, f"calls-{{rank}}.json"), "w") as f:
            json.dump(calls, f)
""")


def torchrun(tmp_path: Path, store: Path, fail_rank: int = -1, fail_after: int = 0) -> subprocess.CompletedProcess:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests_dir=str(Path(__file__).parent), shards_dir=SHARDS_DIR,
                                    other_shard=shard_name(1 - fail_rank if fail_rank in (0, 1) else 0, 2),
                                    shard_done=SHARD_DONE))
    store.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
         str(store), str(fail_rank), str(fail_after)],
        capture_output=True, text=True, timeout=120, env=env,
    )


def test_rank_batches_cover_every_batch_once() -> None:
    for partition in ("contiguous", "strided"):
        for nb, world in ((0, 2), (5, 2), (7, 3), (2, 4)):
            got = np.sort(np.concatenate([rank_batches(nb, r, world, partition) for r in range(world)]))
            assert got.tolist() == list(range(nb))


def test_sharded_array_reads_like_the_concatenation() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(n, 2, 3)).astype(np.float32) for n in (4, 0, 5)]
    whole = np.concatenate(parts)
    arr = ShardedArray(parts, num_views=2, dim=3, dtype="float32")
    assert arr.shape == whole.shape
    rows = np.array([8, 0, 3, 4, 4, 7])
    assert np.array_equal(arr[rows], whole[rows])
    assert np.array_equal(arr[2:7], whole[2:7])
    flat = np.array([17, 0, 9, 8])
    assert np.array_equal(arr.take_flat(flat), whole.reshape(-1, 3)[flat])


def test_two_processes_match_one_and_a_killed_rank_resumes(tmp_path: Path) -> None:
    img, txt = image_split(), text_split()
    t_img, t_txt = teachers()
    ref_img = FeatureStore.open(extract(t_img, img, tmp_path / "single", batch_size=4, progress=False)[0])
    ref_txt = FeatureStore.open(extract(t_txt, txt, tmp_path / "single", batch_size=4, progress=False)[0])

    # --- 2 gloo processes, uninterrupted ------------------------------------------------------
    full = tmp_path / "full"
    proc = torchrun(tmp_path, full)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for ref, split in ((ref_img, img), (ref_txt, txt)):
        path = full / ref.path.relative_to(tmp_path / "single")
        store = FeatureStore.open(path)
        assert is_complete(path)
        assert sorted(store.ids) == sorted(split.ids) and store.count == len(split)
        assert np.array_equal(store.get(split.ids), ref.get(split.ids))  # same features by id (float16 bytes)
        assert np.array_equal(store.get(split.ids[::-1]), ref.get(split.ids[::-1]))
        shards = store.manifest["shards"]
        assert [s["rank"] for s in shards] == [0, 1] and shards[0]["rows"][0] == 0
        assert shards[0]["rows"][1] == shards[1]["rows"][0] and shards[1]["rows"][1] == len(split)
        assert not (path / ARRAY).exists()
        store.verify_checksum()
        store.verify(split)
    # images, contiguous batches: rank 0 holds the first rows, so the store keeps the stored order
    assert FeatureStore.open(full / ref_img.path.relative_to(tmp_path / "single")).ids == img.ids
    # K-view stores: every view of every sample equals the single-process K-view extraction
    for teacher, split, k, bs in ((t_img, img, 3, 4), (t_txt, txt, 2, 5)):
        ref = FeatureStore.open(extract(teacher, split, tmp_path / "single", batch_size=bs, progress=False, views=k)[0])
        got = FeatureStore.open(full / ref.path.relative_to(tmp_path / "single"))
        assert got.num_views == k and len(got.manifest["shards"]) == 2
        assert got.manifest["augmentation"] == ref.manifest["augmentation"] is not None
        for v in range(k):
            want = ref.get(split.ids, [v] * len(split))
            assert np.array_equal(got.get(split.ids, [v] * len(split)), want)
        assert not np.array_equal(ref.get(split.ids, [1] * len(split)), ref.get(split.ids, [0] * len(split)))
        got.verify_checksum()
        got.verify(split)

    # --- rank 1 killed after its first batch: no manifest, shard 0 done, shard 1 resumable -----
    part = tmp_path / "part"
    proc = torchrun(tmp_path, part, fail_rank=1, fail_after=1)
    assert proc.returncode != 0
    img_path = part / ref_img.path.relative_to(tmp_path / "single")
    assert not is_complete(img_path)
    with pytest.raises(FeatureStoreError, match="interrupted|no feature store"):
        FeatureStore.open(img_path)
    s0, s1 = (img_path / SHARDS_DIR / shard_name(r, 2) for r in (0, 1))
    assert (s0 / SHARD_DONE).is_file() and not (s1 / SHARD_DONE).is_file()
    assert json.loads((s1 / PROGRESS).read_text())["batches_done"] == 1
    done0 = (s0 / SHARD_DONE).read_bytes()

    proc = torchrun(tmp_path, part)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((part / "calls-0.json").read_text()) == []  # rank 0's finished shard was kept
    assert json.loads((part / "calls-1.json").read_text())[0] == 2  # rank 1 resumed after batch 1
    assert (s0 / SHARD_DONE).read_bytes() == done0
    full_img = full / ref_img.path.relative_to(tmp_path / "single")
    for r in (0, 1):  # byte-identical to the uninterrupted run
        name = f"{SHARDS_DIR}/{shard_name(r, 2)}/{ARRAY}"
        assert (img_path / name).read_bytes() == (full_img / name).read_bytes()
    resumed = FeatureStore.open(img_path)
    assert np.array_equal(resumed.get(img.ids), ref_img.get(img.ids))
    resumed.verify_checksum()


def test_a_corrupted_shard_fails_its_checksum(tmp_path: Path) -> None:
    # a one-process "distributed" run writes the same layout with a single shard
    from aft.features.sharded import extract_distributed

    img = image_split()
    path = extract_distributed(teachers()[0], img, tmp_path, batch_size=4, progress=False)[0]
    store = FeatureStore.open(path)
    assert len(store.manifest["shards"]) == 1
    assert np.allclose(store.get(img.ids), image_features(img.inputs), atol=1e-2)
    shard = path / store.manifest["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(FeatureStoreError, match="sha256"):
        FeatureStore.open(path).verify_checksum()

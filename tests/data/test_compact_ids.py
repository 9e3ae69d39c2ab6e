"""Compact sample ids (issue 18, item 2): lazy splits and feature stores hold ids as one bytes array
(`IdArray`), found by a sorted permutation (`IdIndex`), with the store format unchanged."""

from __future__ import annotations

import json
import operator
import tracemalloc

import numpy as np
import pytest
import torch

from aft.data import load_split
from aft.data.ids import IdArray, IdIndex, json_chunks, parse_json_ids
from aft.errors import DataError, FeatureStoreError
from aft.features import FeatureStore, extract
from aft.features.store import read_ids, write_ids
from aft.teachers import CallableTeacher

IDS = ["c1/0001.png", "a", "", "zz" * 20, "b/é.png", "日本", "x y"]


def test_id_array_is_a_sequence_of_the_same_strings():
    a = IdArray(IDS)
    assert a == IDS and operator.eq(IDS, a) and list(a) == IDS and len(a) == len(IDS)  # both directions
    assert a[4] == "b/é.png" and a[-1] == "x y"
    assert a[[6, 0]] == ["x y", "c1/0001.png"] and a[1:3] == ["a", ""]
    assert a[np.array([True, False] * 3 + [True])] == [IDS[0], IDS[2], IDS[4], IDS[6]]
    assert "日本" in a and "nope" not in a
    assert a.nbytes == len(IDS) * max(len(s.encode()) for s in IDS)  # width bytes an id, no objects
    assert IdArray.concatenate([a[:2], a[2:]]) == IDS
    assert IdArray(["q", "r", "q"]).first_duplicate() == "q" and a.first_duplicate() is None
    with pytest.raises(DataError, match="NUL"):
        IdArray(["bad\0"])


def test_index_finds_what_a_dict_finds():
    rng = np.random.default_rng(0)
    ids = [f"s{int(i)}" for i in rng.permutation(5000)]
    index, truth = IdIndex(IdArray(ids)), {s: i for i, s in enumerate(ids)}
    query = [ids[int(i)] for i in rng.integers(0, 5000, 300)] + ["nope", "s", "s49999", "s1" * 10]
    pos, found = index.positions(query)
    assert found.tolist() == [q in truth for q in query]
    assert [int(p) for p, f in zip(pos, found, strict=True) if f] == [truth[q] for q in query if q in truth]
    assert IdIndex(IdArray(["x", "y", "x"])).duplicate() == "x"


@pytest.mark.parametrize("ids", [[], ["a"], [f"t-{i:06d}" for i in range(20000)], IDS, ['q"uote', "back\\slash"]])
def test_ids_json_reads_and_writes_the_old_format(tmp_path, ids):
    old_bytes = (json.dumps(ids) + "\n").encode()  # what every earlier aft wrote
    assert b"".join(json_chunks(ids)) + b"\n" == old_bytes
    assert b"".join(json_chunks(IdArray(ids))) + b"\n" == old_bytes
    file = tmp_path / "ids.json"
    sha = write_ids(file, IdArray(ids))
    assert file.read_bytes() == old_bytes  # so manifests' sha256 of ids.json are unchanged
    import hashlib

    assert sha == hashlib.sha256(old_bytes).hexdigest()
    assert read_ids(file, sha, len(ids)) == ids
    fast = parse_json_ids(old_bytes)
    assert fast is None or fast == ids  # escapes (non-ASCII, quotes) take json.loads


@pytest.mark.parametrize("text", [b'["a" "b"]', b'["a", ["b"]]', b'{"a": "b"}', b'["a", 3, "b"]', b'["a"]x',
                                  b'["a\x01"]', b'["a",\n "b"]'])
def test_fast_parse_declines_what_it_does_not_know(text):
    assert parse_json_ids(text) is None


def test_read_ids_refuses_corrupt_files(tmp_path):
    file = tmp_path / "ids.json"
    file.write_bytes(b'["a", "b"]\n')
    with pytest.raises(FeatureStoreError, match="holds 2 ids, manifest says 3"):
        read_ids(file, None, 3)
    with pytest.raises(FeatureStoreError, match="sha256"):
        read_ids(file, "0" * 64, 2)
    file.write_bytes(b'["a", 1]\n')
    with pytest.raises(FeatureStoreError, match="manifest says 2"):
        read_ids(file, None, 2)


def _csv(tmp_path, n):
    path = tmp_path / "train.csv"
    with path.open("w") as fh:
        fh.write("text,label\n")
        for i in range(n):
            fh.write(f"word{i % 7} and more,c{i % 3}\n")
    return path


def test_lazy_loaders_keep_no_str_per_sample(tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "img" / "train" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4), i * 9, np.uint8)).save(tmp_path / "img" / "train" / c / f"{i}.png")
    images = load_split("imagefolder", "train", path=str(tmp_path / "img"))
    assert isinstance(images.ids, IdArray) and images.ids == ["a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png",
                                                              "b/2.png"]
    assert images.inputs.paths is images.ids  # one array for the ids and the file paths
    texts = load_split("csv", "train", path=str(_csv(tmp_path, 40)))
    assert isinstance(texts.ids, IdArray) and texts.ids[3] == "train-000003"
    sub = texts.subset([5, 2])
    assert isinstance(sub.ids, IdArray) and sub.ids == ["train-000005", "train-000002"]
    assert list(texts.index_of(["train-000007", "train-000000"])) == [7, 0]
    with pytest.raises(DataError, match="unknown sample id 'nope'"):
        texts.index_of(["nope"])


def test_split_memory_per_sample_is_a_few_bytes(tmp_path):
    n = 30000
    path = _csv(tmp_path, n)
    load_split("csv", "train", path=str(path))  # warm imports
    tracemalloc.start()
    split = load_split("csv", "train", path=str(path))
    kept, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # ids 12 bytes, offsets/lengths/labels 8 each: a list of str ids alone would be ~70 bytes a sample
    assert kept / n < 60, f"{kept / n:.0f} bytes a sample"
    assert len(split) == n


def test_store_index_memory_and_lookups(tmp_path):
    n = 30000
    rng = np.random.default_rng(1)
    from aft.data.split import DatasetSplit

    split = DatasetSplit("mem", "train", IdArray([f"id-{i:07d}" for i in rng.permutation(n)]),
                         rng.integers(0, 255, size=(n, 2, 2), dtype=np.uint8), np.zeros(n, np.int64), ["z"], "image")
    teacher = CallableTeacher(lambda x: np.asarray(x, np.float32).reshape(len(x), -1), dim=4, modality="image",
                              name="flat")
    (path,) = extract([teacher], split, tmp_path / "store", batch_size=4096, progress=False, dtype="float32")
    FeatureStore.open(path)  # warm
    tracemalloc.start()
    store = FeatureStore.open(path)
    kept, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # ids (11 bytes) + permutation (4): a list of str + dict would be ~130 bytes an id
    assert kept / n < 40, f"{kept / n:.0f} bytes an id"
    pick = rng.integers(0, n, 500)
    want = np.asarray(split.inputs[pick], np.float32).reshape(500, -1)
    np.testing.assert_array_equal(store.get([split.ids[int(i)] for i in pick]), want)
    np.testing.assert_array_equal(store.get(split.ids[pick]), want)
    with pytest.raises(FeatureStoreError, match="sample id 'nope'"):
        store.get(["id-0000001", "nope"])


def test_collapse_check_reads_lazy_inputs_per_batch():
    from aft.training.collapse import check_collapse

    class Inputs:
        def __init__(self, n):
            self.n, self.largest = n, 0

        def __len__(self):
            return self.n

        def __getitem__(self, key):
            idx = np.arange(self.n)[key]
            self.largest = max(self.largest, idx.size)
            return torch.randn(idx.size, 3)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x), x

    x = Inputs(5000)
    report = check_collapse(Net(), x, torch.randint(0, 2, (5000,)), 0.69, [], 1, "validation", torch.device("cpu"),
                            batch_size=64, max_inputs=2048)
    assert x.largest == 64  # never x[:2048] at once
    assert report.checked_on == "validation"

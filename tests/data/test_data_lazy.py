"""Lazy inputs (image paths, text offsets) give the same ids, labels, features and training as eager ones."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from _data_helpers import image_folder

from aft.data import load_split
from aft.data.lazy import LazyInputs
from aft.features import FeatureStore, extract
from aft.features.source import InMemoryFeatures
from aft.teachers import CallableTeacher

CSV = (
    "id,text,label\n"
    'a,"first, with a comma",pos\n'
    'b,"two\nlines ""quoted""",neg\n'
    "\n"
    "c,ünïcode ✓,pos\n"
    "d,short,neg\n"
    "e,a much longer text than the others,pos\n"
)


def _text_teacher() -> CallableTeacher:
    def fn(texts):
        return np.array([[len(t), t.count(" "), sum(map(ord, t)) % 97, t.count("e")] for t in texts], dtype=np.float32)

    return CallableTeacher(fn, dim=4, modality="text", name="test-text-stats")


@pytest.mark.parametrize("ext", ["csv", "jsonl"])
def test_lazy_texts_equal_eager(tmp_path: Path, ext: str) -> None:
    f = tmp_path / f"train.{ext}"
    if ext == "csv":
        f.write_bytes(b"\xef\xbb\xbf" + CSV.encode("utf-8"))  # with a BOM
    else:
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(CSV)))
        f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    lazy = load_split(ext, "train", path=str(f), id_column="id")
    eager = load_split(ext, "train", path=str(f), id_column="id", lazy=False)
    assert lazy.is_lazy and isinstance(lazy.inputs, LazyInputs) and not eager.is_lazy
    assert lazy.ids == eager.ids == list("abcde") and lazy.labels.tolist() == eager.labels.tolist()
    assert list(lazy.inputs) == eager.inputs and eager.inputs[1] == 'two\nlines "quoted"'
    assert lazy.take([4, 1]) == [eager.inputs[4], eager.inputs[1]]
    sub = lazy.subset([3, 0], "val")  # a row view: nothing is read until asked
    assert sub.ids == ["d", "a"] and list(sub.inputs) == ["short", "first, with a comma"]
    assert lazy.text_lengths().tolist() == [len(t) for t in eager.inputs]
    clone = pickle.loads(pickle.dumps(lazy.inputs))  # what a spawned DataLoader worker gets
    assert clone[2] == "ünïcode ✓"
    assert lazy.fingerprint() == load_split(ext, "train", path=str(f), id_column="id").fingerprint()
    other = f.read_bytes().replace(b"short", b"SHORT")
    f.write_bytes(other)
    assert load_split(ext, "train", path=str(f), id_column="id").fingerprint() != lazy.fingerprint()


def test_lazy_text_extraction_equals_eager(tmp_path: Path) -> None:
    f = tmp_path / "train.csv"
    f.write_text(CSV * 1, encoding="utf-8")
    lazy = load_split("csv", "train", path=str(f), id_column="id")
    eager = lazy.materialize()
    stores = []
    for name, split, workers in (("lazy0", lazy, 0), ("lazy2", lazy, 2), ("eager", eager, 0)):
        [path] = extract([_text_teacher()], split, tmp_path / name, batch_size=2, dtype="float32", progress=False,
                         workers=workers)
        stores.append(FeatureStore.open(path))
    ids = list("edcba")
    for store in stores[1:]:
        np.testing.assert_array_equal(store.get(ids), stores[0].get(ids))
    assert stores[0].manifest["extraction"]["batch_order"] == stores[2].manifest["extraction"]["batch_order"]


def test_lazy_image_extraction_and_training_equal_eager(tmp_path: Path) -> None:
    from _data_helpers import _tiny

    from aft.training import TrainConfig, train

    root = image_folder(tmp_path / "pets", {"train": {"a": 20, "b": 20}, "test": {"a": 5, "b": 5}}, size=8)
    lazy = load_split("imagefolder", "train", path=str(root))
    test = load_split("imagefolder", "test", path=str(root))
    eager = lazy.materialize()
    assert lazy.is_lazy and eager.ids == lazy.ids and np.array_equal(eager.inputs, lazy.inputs[:])
    outs = {}
    for name, split, workers in (("lazy0", lazy, 0), ("lazy2", lazy, 2), ("eager", eager, 0)):
        [path] = extract([_tiny()], split, tmp_path / f"st-{name}", batch_size=7, dtype="float32", progress=False,
                         workers=workers)
        outs[name] = FeatureStore.open(path).get(lazy.ids)
    np.testing.assert_array_equal(outs["lazy0"], outs["eager"])
    np.testing.assert_array_equal(outs["lazy2"], outs["eager"])

    results = {}
    for name, tr, te, workers in (("lazy0", lazy, test, 0), ("lazy2", lazy, test, 2),
                                  ("eager", eager, test.materialize(), 0)):
        cfg = TrainConfig(method="aft", beta=1.0, student="cnn-small", steps=6, batch_size=8, seed=3, device="cpu", progress=False,
                          tensorboard=False, val_fraction=0.2, workers=workers, eval_every=3)
        res = train(cfg, train_split=tr, test_split=te, features=InMemoryFeatures(lazy.ids, outs["eager"]))
        results[name] = (res, {k: v.detach().clone() for k, v in res.student.state_dict().items()})
    ref, ref_state = results["eager"]
    for name in ("lazy0", "lazy2"):
        res, state = results[name]
        assert [h.get("loss") for h in res.history] == pytest.approx([h.get("loss") for h in ref.history], abs=1e-6)
        assert res.test_accuracy == ref.test_accuracy and res.val_accuracy == ref.val_accuracy
        for k, v in state.items():
            torch.testing.assert_close(v, ref_state[k], rtol=0, atol=1e-6)

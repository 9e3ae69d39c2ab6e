"""The `parquet` dataset: lazy by row group, ids/labels/classes as the file says, through the CLI, errors."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from _data_helpers import PROJ, _tiny, learnable_images, png_bytes
from PIL import Image

from aft.cli.main import main
from aft.data import load_split
from aft.data import parquet as parquet_mod
from aft.data.lazy import LazyInputs
from aft.errors import ConfigError, DataError
from aft.features import FeatureStore, extract

pa = pytest.importorskip("pyarrow")  # the `data` extra: not in .venv-full
pq = pytest.importorskip("pyarrow.parquet")


def _count_row_group_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    orig = pq.ParquetFile.read_row_group

    def counted(self, i, *args, **kwargs):
        calls.append(i)
        return orig(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    return calls


def test_text_splits_are_lazy_and_match_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "reviews"
    d.mkdir()
    texts = [f"text number {i} " + "x" * (i % 7) for i in range(23)]
    labels = ["pos" if i % 3 else "neg" for i in range(23)]
    pq.write_table(pa.table({"body": texts, "y": labels}), d / "train.parquet", row_group_size=5)
    pq.write_table(pa.table({"body": ["only mid", "and neg"], "y": ["mid", "neg"]}), d / "test.parquet")
    calls = _count_row_group_reads(monkeypatch)
    tr = load_split("parquet", "train", path=str(d), text_column="body", label_column="y")
    assert isinstance(tr.inputs, LazyInputs) and tr.is_lazy and tr.modality == "text"
    at_load = len(calls)  # indexing reads the text column once, row group by row group (to check it)
    assert at_load == 5
    sub = tr.subset([22, 3, 4])
    assert len(calls) == at_load  # a row view reads nothing
    # against an independent reading of the file
    table = pq.read_table(d / "train.parquet").to_pylist()
    assert list(tr.ids) == [f"train-{i:06d}" for i in range(23)]
    assert tr.class_names == ["mid", "neg", "pos"]  # pooled with the test file's 'mid'
    assert [tr.class_names[k] for k in tr.labels] == [r["y"] for r in table]
    assert list(sub.inputs) == [table[22]["body"], table[3]["body"], table[4]["body"]]
    assert len(calls) == at_load + 2  # rows 3 and 4 share a row group: read once per batch
    assert tr.text_lengths().tolist() == [len(t) for t in texts]
    assert tr.dataset == "reviews"
    te = load_split("parquet", "test", path=str(d), text_column="body", label_column="y")
    assert te.labels.tolist() == [0, 1] and te.class_names == tr.class_names
    assert load_split("parquet", "train", path=str(d / "{split}.parquet"), text_column="body",
                      label_column="y", lazy=False).inputs == texts


def test_images_bytes_and_hf_structs_ids_and_classlabel_names(tmp_path: Path) -> None:
    images = [png_bytes(10 * i) for i in range(7)]
    pq.write_table(pa.table({"image": images, "label": [0, 1, 2, 0, 1, 2, 0], "uid": [f"u{i}" for i in range(7)]}),
                   tmp_path / "train.parquet", row_group_size=3)
    ds = load_split("parquet", "train", path=str(tmp_path / "train.parquet"), id_column="uid")
    assert ds.modality == "image" and ds.inputs.shape == (7, 8, 8) and list(ds.ids) == [f"u{i}" for i in range(7)]
    assert ds.class_names == ["0", "1", "2"] and ds.labels.tolist() == [0, 1, 2, 0, 1, 2, 0]
    batch = ds.take([6, 0, 4])
    assert batch.dtype == np.uint8 and batch[:, 0, 0].tolist() == [60, 0, 40]
    # the struct Hugging Face's Image feature writes, with the ClassLabel names in the schema metadata
    struct = pa.array([{"bytes": b, "path": None} for b in images[:4]],
                      type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    meta = {"huggingface": json.dumps({"info": {"features": {"label": {"_type": "ClassLabel",
                                                                        "names": ["cat", "dog", "eel"]}}}})}
    table = pa.table({"img": struct, "label": [2, 0, 2, 1]}).replace_schema_metadata(meta)
    pq.write_table(table, tmp_path / "pets-00000-of-00002.parquet")
    pq.write_table(table.slice(0, 2), tmp_path / "pets-00001-of-00002.parquet")
    pets = load_split("parquet", "pets", path=str(tmp_path), mode="RGB")  # <split>-*.parquet shards
    assert pets.class_names == ["cat", "dog", "eel"] and pets.labels.tolist() == [2, 0, 2, 1, 2, 0]
    assert list(pets.ids)[3:5] == ["pets-00000-of-00002-000003", "pets-00001-of-00002-000000"]
    assert pets.inputs.shape == (6, 8, 8, 3) and pets.take([5])[0, 0, 0].tolist() == [10, 10, 10]


def test_reading_keeps_a_bounded_row_group_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("abcdefgh "), 2000)) for _ in range(400)]  # ~800 kB, 40 row groups
    f = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": texts, "label": [i % 2 for i in range(400)]}), f, row_group_size=10)
    monkeypatch.setattr(parquet_mod, "ROW_GROUP_CACHE_BYTES", 60_000)  # ~3 row groups
    ds = load_split("parquet", "train", path=str(f))
    base = pa.total_allocated_bytes()
    peak = 0
    for s in range(0, 400, 16):
        assert ds.take(np.arange(s, min(s + 16, 400))) == texts[s:s + 16]
        peak = max(peak, pa.total_allocated_bytes() - base)
    assert peak < 200_000  # the cache, not the ~800 kB column
    reader = ds.inputs.reader
    assert len(reader._cache) <= 4 and reader._cached_bytes <= 60_000 + max(c.nbytes for c in reader._cache.values())


def test_extraction_with_workers_equals_in_process(tmp_path: Path) -> None:
    images, labels = learnable_images(30)
    pq.write_table(pa.table({"image": images, "label": labels}), tmp_path / "train.parquet", row_group_size=8)
    ds = load_split("parquet", "train", path=str(tmp_path))
    outs = []
    for workers in (0, 2):
        [path] = extract([_tiny()], ds, tmp_path / f"st{workers}", batch_size=7, dtype="float32", progress=False,
                         workers=workers)
        outs.append(FeatureStore.open(path).get(list(ds.ids)))
    np.testing.assert_array_equal(outs[0], outs[1])
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in images])  # decoded independently
    np.testing.assert_allclose(outs[0], decoded.reshape(30, -1).astype(np.float32) @ PROJ / 255.0, rtol=1e-5)
    assert ds.fingerprint() == load_split("parquet", "train", path=str(tmp_path)).fingerprint()
    images[3] = png_bytes(7)  # the same ids and labels, one image changed: another fingerprint
    pq.write_table(pa.table({"image": images, "label": labels}), tmp_path / "train.parquet", row_group_size=8)
    changed = load_split("parquet", "train", path=str(tmp_path))
    assert changed.fingerprint() != ds.fingerprint()
    (tmp_path / "train.parquet").unlink()
    with pytest.raises(DataError, match="train.parquet is gone"):
        changed.subset([0]).fingerprint()


def test_extract_train_predict_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "shapes"
    d.mkdir()
    images, labels = learnable_images(24)
    names = ["dark", "light"]
    pq.write_table(pa.table({"image": images, "label": [names[c] for c in labels]}), d / "train.parquet",
                   row_group_size=5)
    test_images, _ = learnable_images(4, seed=1)
    pq.write_table(pa.table({"image": test_images[:2], "label": ["light", "light"]}), d / "test.parquet")
    data = ["--dataset", "parquet", "--data-option", f"path={d}"]
    assert main(["extract", "--teacher", "test-data-tiny", *data, "--split", "train", "--store", "st",
                 "--no-progress", "--batch-size", "8"]) == 0
    assert "shapes/train (24 samples" in capsys.readouterr().out
    assert main(["train", *data, "--teacher", "test-data-tiny", "--store", "st", "--method", "aft", "--beta", "1",
                 "--student", "cnn-small", "--steps", "3", "--batch-size", "8", "--no-progress", "--device", "cpu",
                 "--set", "tensorboard=false"]) == 0
    run = Path(json.loads(capsys.readouterr().out)["run_dir"])
    assert run.name == "shapes-aft-cnn-small" and json.loads((run / "result.json").read_text())["dataset"] == "shapes"
    assert main(["predict", "--model", str(run), *data, "--split", "test", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["test-000000", "test-000001"] and {r["true"] for r in rows} == {"light"}


def test_compare_records_name_the_parquet_data(tmp_path: Path) -> None:
    from aft.cli.commands.compare import with_data
    from aft.experiments.grid import _job, settings
    from aft.experiments.suite import SuiteConfig

    suite = SuiteConfig(name="mine", dataset="digits", students=["cnn-small"], teacher_sets=[["t"]],
                        methods=["aft"], train_sizes=[20], folds=2)
    mine = with_data(suite, "parquet", [f"path={tmp_path / 'news-{split}.parquet'}", "text_column=body"])
    assert mine.dataset_options == {"path": str(tmp_path / "news-{split}.parquet"), "text_column": "body"}
    assert _job(mine, settings(mine)[0], "aft", 1.0, 0, "final").dataset == "news"


def test_bad_parquet_inputs_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "train.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1]}), f)
    with pytest.raises(DataError, match=r"has no column 'lbl' \(columns present: 'text', 'label'\); pass label_column="):
        load_split("parquet", "train", path=str(f), label_column="lbl")
    (tmp_path / "other").mkdir()
    pq.write_table(pa.table({"text": ["a"], "label": [0]}), tmp_path / "other" / "test.parquet")
    with pytest.raises(DataError, match=r"no train.parquet, train-\*.parquet or train/\*.parquet in .*present: test.parquet"):
        load_split("parquet", "train", path=str(tmp_path / "other"))
    with pytest.raises(ConfigError, match="give text_column= or image_column=, not both"):
        load_split("parquet", "train", path=str(f), text_column="text", image_column="text")
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())}), empty)
    with pytest.raises(DataError, match="has no rows; write at least one sample"):
        load_split("parquet", "train", path=str(empty))
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"], "label": [0, 1, 0]}), nulls)
    with pytest.raises(DataError, match=r"row 1: the text in column 'text' is missing \(null\)"):
        load_split("parquet", "train", path=str(nulls))
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"image": [png_bytes(5), b"not an image"], "label": [0, 1]}), bad)
    ds = load_split("parquet", "train", path=str(bad))  # lazy: the bad bytes fail when read, naming the row
    with pytest.raises(DataError, match=r"cannot read image .*bad.parquet row 1 .*replace the image bytes"):
        ds.take([1])
    first_bad = tmp_path / "first_bad.parquet"
    pq.write_table(pa.table({"image": [b"\x00garbage"], "label": [0]}), first_bad)
    with pytest.raises(DataError, match=r"cannot read image .*row 0 .*encoded image bytes \(PNG, JPEG"):
        load_split("parquet", "train", path=str(first_bad))
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="is not a readable Parquet file"):
        load_split("parquet", "train", path=str(tmp_path / "junk.parquet"))
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"needs the 'pyarrow' package; pip install 'aft\[data\]'"):
        load_split("parquet", "train", path=str(f))
    assert main(["extract", "--teacher", "test-data-tiny", "--dataset", "parquet", "--data-option", f"path={f}",
                 "--store", str(tmp_path / "st"), "--no-progress"]) == 2
    assert not (tmp_path / "st").exists()


def test_text_extraction_in_workers_equals_the_in_memory_texts(tmp_path: Path) -> None:
    from aft.teachers import CallableTeacher

    def stats(texts):
        return np.array([[len(t), t.count(" "), sum(map(ord, t)) % 97] for t in texts], dtype=np.float32)

    texts = [("word " * (i % 9)) + f"end{i}" for i in range(40)]
    pq.write_table(pa.table({"text": texts, "label": [i % 2 for i in range(40)]}), tmp_path / "train.parquet",
                   row_group_size=6)
    ds = load_split("parquet", "train", path=str(tmp_path))
    eager = ds.materialize()
    assert not eager.is_lazy and eager.inputs == texts
    got = {}
    for name, split, workers in (("lazy0", ds, 0), ("lazy2", ds, 2), ("eager", eager, 0)):
        [path] = extract([CallableTeacher(stats, dim=3, modality="text", name="stats")], split, tmp_path / name,
                         batch_size=8, dtype="float32", progress=False, workers=workers)
        store = FeatureStore.open(path)
        got[name] = (store.get(list(ds.ids)), store.manifest["extraction"]["batch_order"])
    np.testing.assert_array_equal(got["lazy0"][0], stats(texts))
    np.testing.assert_array_equal(got["lazy2"][0], stats(texts))
    assert got["lazy0"][1] == got["eager"][1] == "length-sorted"
    from aft.features import batch_order

    order = batch_order(ds)  # from the lengths recorded at load time, nothing read
    np.testing.assert_array_equal(order, batch_order(eager))
    assert not np.array_equal(order, np.arange(40))

"""The `hf` dataset: Hugging Face `datasets` folders (save_to_disk), memory-mapped, read lazily; CLI; errors."""

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
from aft.data.lazy import LazyInputs
from aft.errors import ConfigError, DataError
from aft.features import FeatureStore, extract

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _image_dict(root: Path, train: int = 20, test_labels: tuple[int, ...] = (1, 1)) -> tuple[Path, list[bytes]]:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from datasets import Image as HfImage

    images, labels = learnable_images(train)
    features = Features({"image": HfImage(), "label": ClassLabel(names=["dark", "light", "unused"]),
                         "uid": Value("string")})
    tr = Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in images], "label": labels,
                            "uid": [f"s{i:02d}" for i in range(train)]}, features=features)
    test_images, _ = learnable_images(len(test_labels), seed=1)
    te = Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in test_images], "label": list(test_labels),
                            "uid": [f"t{i}" for i in range(len(test_labels))]}, features=features)
    DatasetDict({"train": tr, "test": te}).save_to_disk(str(root))
    return root, images


def test_dataset_dict_images_lazy_ids_labels_classlabel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, images = _image_dict(tmp_path / "pets")
    calls: list[int] = []
    import aft.data.hf as hf_mod

    orig = hf_mod.HfRows.read
    monkeypatch.setattr(hf_mod.HfRows, "read", lambda self, rows: calls.append(len(rows)) or orig(self, rows))
    tr = load_split("hf", "train", path=str(root))
    assert isinstance(tr.inputs, LazyInputs) and tr.modality == "image" and calls == []  # nothing read yet
    sub = tr.subset([19, 2])
    assert calls == []  # a row view reads nothing
    assert tr.class_names == ["dark", "light", "unused"]  # the ClassLabel names, in their order
    ref = datasets.load_from_disk(str(root))["train"].with_format("arrow")[:].to_pylist()  # independent reading
    assert tr.labels.tolist() == [r["label"] for r in ref]
    assert list(tr.ids) == [f"train-{i:06d}" for i in range(20)]
    batch = sub.inputs[:]
    assert calls == [2]
    expect = np.stack([np.asarray(Image.open(io.BytesIO(images[i]))) for i in (19, 2)])
    np.testing.assert_array_equal(batch, expect)
    with_ids = load_split("hf", "test", path=str(root), id_column="uid")
    assert list(with_ids.ids) == ["t0", "t1"] and with_ids.labels.tolist() == [1, 1]
    assert with_ids.dataset == "pets"


def test_text_dataset_single_folder_and_template_and_pooled_names(tmp_path: Path) -> None:
    from datasets import Dataset

    Dataset.from_dict({"sentence": ["good film", "bad plot", "fine"], "y": ["pos", "neg", "pos"]}).save_to_disk(
        str(tmp_path / "reviews" / "train"))
    Dataset.from_dict({"sentence": ["meh"], "y": ["mid"]}).save_to_disk(str(tmp_path / "reviews" / "test"))
    path = str(tmp_path / "reviews" / "{split}")
    tr = load_split("hf", "train", path=path, text_column="sentence", label_column="y")
    assert tr.modality == "text" and list(tr.inputs) == ["good film", "bad plot", "fine"]
    assert tr.class_names == ["mid", "neg", "pos"] and tr.labels.tolist() == [2, 1, 2]  # 'mid' from the test split
    assert tr.text_lengths().tolist() == [9, 8, 4] and tr.dataset == "reviews"
    single = load_split("hf", "whatever", path=str(tmp_path / "reviews" / "test"), text_column="sentence",
                        label_column="y")
    assert list(single.ids) == ["test-000000"] and single.class_names == ["mid"]


def test_extraction_in_workers_equals_in_process(tmp_path: Path) -> None:
    root, images = _image_dict(tmp_path / "pets", train=24)
    ds = load_split("hf", "train", path=str(root))
    outs = []
    for workers in (0, 2):
        [path] = extract([_tiny()], ds, tmp_path / f"st{workers}", batch_size=5, dtype="float32", progress=False,
                         workers=workers)
        outs.append(FeatureStore.open(path).get(list(ds.ids)))
    np.testing.assert_array_equal(outs[0], outs[1])
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in images]).reshape(24, -1).astype(np.float32)
    np.testing.assert_allclose(outs[0], decoded @ PROJ / 255.0, rtol=1e-5)


def test_extract_and_train_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root, _ = _image_dict(tmp_path / "pets", train=24)
    data = ["--dataset", "hf", "--data-option", f"path={root}", "--data-option", "id_column=uid"]
    assert main(["extract", "--teacher", "test-data-tiny", *data, "--split", "train", "--store", "st",
                 "--no-progress", "--batch-size", "8"]) == 0
    assert "pets/train (24 samples" in capsys.readouterr().out
    assert main(["train", *data, "--teacher", "test-data-tiny", "--store", "st", "--method", "aft", "--beta", "1",
                 "--student", "cnn-small", "--steps", "3", "--batch-size", "8", "--no-progress", "--device", "cpu",
                 "--set", "tensorboard=false"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert Path(res["run_dir"]).name == "pets-aft-cnn-small"
    assert main(["predict", "--model", res["run_dir"], *data, "--split", "test", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["t0", "t1"] and {r["true"] for r in rows} == {"light"}


def test_bad_hf_inputs_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datasets import Dataset, DatasetDict

    root = tmp_path / "d"
    DatasetDict({"train": Dataset.from_dict({"text": ["a", ""], "label": [0, 1]})}).save_to_disk(str(root))
    with pytest.raises(DataError, match=r"has no split 'test' \(splits: train\); pick one of them"):
        load_split("hf", "test", path=str(root))
    with pytest.raises(DataError, match=r"row 1: the text in column 'text' is empty"):
        load_split("hf", "train", path=str(root))
    with pytest.raises(DataError, match=r"has no column 'body' \(columns present: 'text', 'label'\)"):
        load_split("hf", "train", path=str(root), text_column="body")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="is not a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk"):
        load_split("hf", "train", path=str(tmp_path / "plain"))
    Dataset.from_dict({"text": pa_empty(), "label": []}).save_to_disk(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="has no rows"):
        load_split("hf", "train", path=str(tmp_path / "empty"))
    Dataset.from_dict({"image": [png_bytes(3), b"junk"], "label": [0, 1]}).save_to_disk(str(tmp_path / "img"))
    ds = load_split("hf", "train", path=str(tmp_path / "img"))
    with pytest.raises(DataError, match=r"cannot read image .*img row 1 \(not an image format"):
        ds.take([0, 1])
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match=r"needs the 'datasets' package; pip install 'aft\[data\]'"):
        load_split("hf", "train", path=str(root))


def pa_empty() -> list[str]:
    return []


def test_local_files_through_load_dataset_builders(tmp_path: Path) -> None:
    d = tmp_path / "news"
    d.mkdir()
    (d / "train.csv").write_text("text,label\nrain today,weather\nvote counted,politics\nsun,weather\n")
    (d / "test.csv").write_text("text,label\nscore 2-1,sport\n")
    cache = str(tmp_path / "hf-cache")
    tr = load_split("hf", "train", path=str(d), builder="csv", hf_cache=cache)
    assert tr.modality == "text" and list(tr.inputs) == ["rain today", "vote counted", "sun"]
    assert tr.class_names == ["politics", "sport", "weather"] and tr.labels.tolist() == [2, 0, 2]  # pooled
    assert list(tr.ids) == ["train-000000", "train-000001", "train-000002"] and tr.dataset == "news"
    assert list(load_split("csv", "train", path=str(d)).inputs) == list(tr.inputs)  # as aft's own csv loader
    (d / "train.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    js = load_split("hf", "train", path=str(d / "train.jsonl"), builder="json", hf_cache=cache)
    assert list(js.inputs) == ["a", "b"] and js.labels.tolist() == [1, 0]
    with pytest.raises(ConfigError, match="builder must be one of parquet, csv, json"):
        load_split("hf", "train", path=str(d), builder="imagefolder")

"""Multi-field datasets: loaders, field splits, and stores keyed by (teacher, field)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aft.data import load_split
from aft.data.multifield import FieldRows, MultiFieldSplit, select_field, split_field
from aft.errors import ConfigError, DataError
from aft.features import extract, open_features
from aft.teachers import CallableTeacher

PIL = pytest.importorskip("PIL.Image")


def _png(path: Path, value: int, size: tuple[int, int] = (6, 5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.arange(size[0] * size[1]).reshape(size[1], size[0]) * 3 + value).astype(np.uint8)
    PIL.fromarray(arr, mode="L").save(path)


def _pixel_fn(x: np.ndarray) -> np.ndarray:
    return np.stack([x.reshape(len(x), -1).mean(1), x.reshape(len(x), -1).max(1)], axis=1).astype(np.float32) / 255.0


def _char_fn(texts: list[str]) -> np.ndarray:
    return np.array([[len(t), t.count("a"), t.count(" ")] for t in texts], dtype=np.float32)


def _table(tmp_path: Path) -> Path:
    rows = [("img/a.png", 10, "a cat sat", "yes"), ("img/b.png", 20, "no dogs", "no"), ("img/c.png", 30, "a a a", "yes")]
    with open(tmp_path / "train.csv", "w", encoding="utf-8") as fh:
        fh.write("picture,caption,label\n")
        for rel, v, text, label in rows:
            _png(tmp_path / rel, v)
            fh.write(f"{rel},{text},{label}\n")
    return tmp_path


def test_csv_loader_gives_named_fields_with_their_modalities(tmp_path: Path) -> None:
    split = load_split("multifield-csv", "train", path=str(_table(tmp_path)), image_columns="picture", text_columns="caption")
    assert isinstance(split, MultiFieldSplit) and split.modality == "multi"
    assert split.field_modalities == {"picture": "image", "caption": "text"}
    assert split.class_names == ["no", "yes"] and split.labels.tolist() == [1, 0, 1]
    pics = split.field_split("picture")
    assert pics.dataset == f"{tmp_path.name}@picture" and pics.modality == "image" and pics.inputs.shape == (3, 5, 6)
    assert int(pics.inputs[1, 0, 0]) == 20  # the second row's image, read from its relative path
    assert split.field_split("caption").inputs == ["a cat sat", "no dogs", "a a a"]
    row = split.inputs[1]
    assert set(row) == {"picture", "caption"} and row["caption"] == "no dogs" and int(row["picture"][0, 0]) == 20


def test_jsonl_with_two_text_fields_and_subsets_stay_multi_field(tmp_path: Path) -> None:
    rows = [{"premise": "p1", "hypothesis": "h1", "label": 0, "id": "x"},
            {"premise": "p2", "hypothesis": "h2", "label": 2, "id": "y"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    split = load_split("multifield-jsonl", "train", path=str(tmp_path / "d.jsonl"),
                       text_columns="premise,hypothesis", id_column="id")
    assert split.ids == ["x", "y"] and split.class_names == ["0", "1", "2"] and split.labels.tolist() == [0, 2]
    sub = split.subset([1])
    assert isinstance(sub, MultiFieldSplit) and sub.field_split("hypothesis").inputs == ["h2"]
    # the fingerprint covers every field: another hypothesis is other content
    other = MultiFieldSplit("d", "train", ["x", "y"], FieldRows({"premise": ["p1", "p2"], "hypothesis": ["h1", "H2"]}),
                            split.labels, split.class_names, "multi", field_modalities={"premise": "text", "hypothesis": "text"})  # type: ignore[arg-type]
    assert other.fingerprint() != split.fingerprint()
    assert split.field_split("premise").fingerprint() != split.field_split("hypothesis").fingerprint()


def test_image_captions_loader(tmp_path: Path) -> None:
    for cls, v in (("cat", 5), ("dog", 9)):
        _png(tmp_path / "train" / cls / f"{cls}1.png", v)
    caps = [{"file": "cat/cat1.png", "text": "a cat"}, {"file": "dog/dog1.png", "text": "a dog"}]
    (tmp_path / "train" / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in caps), encoding="utf-8")
    split = load_split("image-captions", "train", path=str(tmp_path))
    assert split.fields == ["image", "text"] and split.ids == ["cat/cat1.png", "dog/dog1.png"]
    assert split.field_split("text").inputs == ["a cat", "a dog"] and split.class_names == ["cat", "dog"]
    (tmp_path / "train" / "captions.jsonl").write_text(json.dumps(caps[0]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dog1.png has no caption in .*captions.jsonl; add a row for 'dog/dog1.png'"):
        load_split("image-captions", "train", path=str(tmp_path))


def test_bad_tables_are_one_line_errors(tmp_path: Path) -> None:
    root = _table(tmp_path)
    with pytest.raises(DataError, match=r"has no column 'photo'"):
        load_split("multifield-csv", "train", path=str(root), image_columns="photo")
    with pytest.raises(ConfigError, match=r"name the fields: image_columns"):
        load_split("multifield-csv", "train", path=str(root))
    (root / "img" / "b.png").unlink()
    with pytest.raises(DataError, match=r"cannot read image .*b.png"):
        load_split("multifield-csv", "train", path=str(root), image_columns="picture")


def test_teacher_field_specs() -> None:
    assert split_field("minilm@text") == ("minilm", "text")
    assert split_field("hf:org/m?pooling=cls@premise") == ("hf:org/m?pooling=cls", "premise")
    assert split_field("st:/models/x@v2/model") == ("st:/models/x@v2/model", None)  # not a field name
    assert split_field("minilm") == ("minilm", None)
    mf = MultiFieldSplit("d", "train", ["a"], FieldRows({"image": np.zeros((1, 2, 2), np.uint8), "text": ["t"]}),
                         np.array([0]), ["c"], "multi", field_modalities={"image": "image", "text": "text"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"d has fields image, text; name the one teacher 'minilm' encodes, e.g. minilm@image"):
        select_field(mf, "minilm")
    with pytest.raises(ConfigError, match=r"d has no field 'audio'; its fields: image, text"):
        select_field(mf, "minilm@audio")
    single = mf.field_split("text")
    with pytest.raises(ConfigError, match=r"names field 'image' but d@text has one field"):
        select_field(single, "minilm@image")


def test_stores_are_keyed_by_teacher_and_field(tmp_path: Path) -> None:
    rows = FieldRows({"image": np.random.default_rng(0).integers(0, 256, (7, 4, 4), dtype=np.uint8),
                      "premise": [f"a premise {i}" for i in range(7)], "hypothesis": ["a " * i for i in range(7)]})
    split = MultiFieldSplit("toy", "train", [f"s{i}" for i in range(7)], rows, np.arange(7) % 2, ["n", "y"], "multi",  # type: ignore[arg-type]
                            field_modalities={"image": "image", "premise": "text", "hypothesis": "text"})
    pix = CallableTeacher(_pixel_fn, dim=2, modality="image", name="pix@image")
    chars_p = CallableTeacher(_char_fn, dim=3, modality="text", name="chars@premise")
    chars_h = CallableTeacher(_char_fn, dim=3, modality="text", name="chars@hypothesis")
    paths = extract([pix, chars_p, chars_h], split, tmp_path, dtype="float32", progress=False)
    assert len(set(paths)) == 3  # the same text teacher on two fields: two stores
    feats = open_features(tmp_path, [pix, chars_p, chars_h], split)
    assert feats.column_ranges == {"pix@image": (0, 2), "chars@premise": (2, 5), "chars@hypothesis": (5, 8)}
    got = feats.get(["s3", "s0"])
    np.testing.assert_allclose(got[:, :2], _pixel_fn(rows.columns["image"][[3, 0]]), rtol=1e-6)
    np.testing.assert_allclose(got[:, 2:5], _char_fn(["a premise 3", "a premise 0"]))
    np.testing.assert_allclose(got[:, 5:], _char_fn(["a a a ", ""]))
    with pytest.raises(ConfigError, match=r"name the one teacher"):
        extract(CallableTeacher(_char_fn, dim=3, modality="text", name="chars"), split, tmp_path, progress=False)

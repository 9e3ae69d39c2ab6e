"""CSV / JSONL loaders: split-file conventions, labels, and one clear DataError per bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aft.data import load_split
from aft.errors import ConfigError, DataError


def _csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_csv_folder_with_class_names_shared_across_splits(tmp_path: Path) -> None:
    _csv(tmp_path / "d" / "train.csv", 'text,label\n"hello, world",pos\nbad,neg\ngood,pos\n')
    _csv(tmp_path / "d" / "test.csv", "text,label\nmeh,pos\nugly,zzz\n")
    tr = load_split("csv", "train", path=str(tmp_path / "d"))
    te = load_split("csv", "test", path=str(tmp_path / "d"))
    assert tr.class_names == te.class_names == ["neg", "pos", "zzz"]
    assert tr.inputs == ["hello, world", "bad", "good"] and tr.labels.tolist() == [1, 0, 1]
    assert te.labels.tolist() == [1, 2]
    assert tr.ids == ["train-000000", "train-000001", "train-000002"] and tr.dataset == "d"
    assert tr.modality == "text"


def test_int_labels_ids_template_and_single_file(tmp_path: Path) -> None:
    _csv(tmp_path / "train.csv", "id,body,y\na,x one,0\nb,x two,2\n")
    ds = load_split("csv", "train", path=str(tmp_path / "{split}.csv"), text_column="body", label_column="y",
                    id_column="id")
    assert ds.ids == ["a", "b"] and ds.labels.tolist() == [0, 2] and ds.class_names == ["0", "1", "2"]
    one = load_split("csv", "whatever", path=str(tmp_path / "train.csv"), text_column="body", label_column="y",
                     class_names=["neg", "mid", "pos", "extra"])
    assert one.split == "whatever" and one.class_names == ["neg", "mid", "pos", "extra"]


def test_jsonl_with_names_ints_and_given_classes(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "spam", "id": 7}, {"text": "b", "label": "ham", "id": 8}])
    ds = load_split("jsonl", "train", path=str(f), id_column="id", class_names=["ham", "spam"])
    assert ds.ids == ["7", "8"] and ds.labels.tolist() == [1, 0]
    g = _jsonl(tmp_path / "g.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 0.0}])
    assert load_split("jsonl", "train", path=str(g)).labels.tolist() == [1, 0]


def test_missing_label_column_names_it_and_lists_columns(tmp_path: Path) -> None:
    f = _csv(tmp_path / "train.csv", "text,category\nhi,1\n")
    with pytest.raises(DataError) as exc:
        load_split("csv", "train", path=str(f))
    msg = str(exc.value)
    assert "no column 'label'" in msg and "'text', 'category'" in msg and "label_column" in msg
    assert "\n" not in msg
    j = _jsonl(tmp_path / "t.jsonl", [{"body": "x", "label": 0}])
    with pytest.raises(DataError, match=r"no column 'text' \(columns present: 'body', 'label'\)"):
        load_split("jsonl", "train", path=str(j))


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("text,label\nhi,1.5\n", r"line 2: label '1.5' is not an integer"),
        ("text,label\nhi,-1\n", r"label -1 is out of range"),
        ("text,label\nhi,\n", r"line 2: the label is empty"),
        ("text,label\n,0\n", r"line 2: the text in column 'text' is empty"),
        ("text,label\n   ,0\n", r"the text in column 'text' is empty"),
        ("text,label\nhi,0,extra\n", r"line 2 has more fields than the header"),
        ("text,label\n", r"has no samples"),
    ],
)
def test_csv_errors(tmp_path: Path, content: str, pattern: str) -> None:
    f = _csv(tmp_path / "train.csv", content)
    with pytest.raises(DataError, match=pattern):
        load_split("csv", "train", path=str(f))


def test_out_of_range_and_unseen_classes_with_class_names(tmp_path: Path) -> None:
    f = _csv(tmp_path / "a.csv", "text,label\nhi,3\n")
    with pytest.raises(DataError, match=r"label 3 is out of range for 2 classes.*\[0, 1\]"):
        load_split("csv", "train", path=str(f), class_names=["a", "b"])
    g = _csv(tmp_path / "b.csv", "text,label\nhi,cat\nho,cow\n")
    with pytest.raises(DataError, match=r"line 3: unknown class 'cow'; known classes: cat, dog"):
        load_split("csv", "train", path=str(g), class_names=["cat", "dog"])


def test_duplicate_and_empty_ids(tmp_path: Path) -> None:
    f = _csv(tmp_path / "a.csv", "id,text,label\nx,a,0\ny,b,0\nx,c,1\n")
    with pytest.raises(DataError, match=r"line 4: duplicate id 'x' \(first at line 2\)"):
        load_split("csv", "train", path=str(f), id_column="id")
    g = _csv(tmp_path / "b.csv", "id,text,label\n,a,0\n")
    with pytest.raises(DataError, match="the id in column 'id' is empty"):
        load_split("csv", "train", path=str(g), id_column="id")


def test_non_utf8_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "train.csv"
    f.write_bytes(b"text,label\nfine,0\ncaf\xe9,1\n")
    with pytest.raises(DataError, match=r"train\.csv: line 3 is not valid UTF-8.*re-save the file as UTF-8"):
        load_split("csv", "train", path=str(f))


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_split("csv", "train", path=str(tmp_path / "nope.csv"))
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        load_split("csv", "train", path=str(tmp_path / "empty.csv"))
    _csv(tmp_path / "d" / "train.csv", "text,label\na,0\n")
    with pytest.raises(DataError, match=r"no file test\.csv in .*present: train\.csv"):
        load_split("csv", "test", path=str(tmp_path / "d"))


def test_jsonl_errors(tmp_path: Path) -> None:
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "a", "label": 0}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_split("jsonl", "train", path=str(f))
    f.write_text('{"text": "a", "label": 0}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not a JSON object"):
        load_split("jsonl", "train", path=str(f))
    f.write_text('{"text": 5, "label": 0}\n', encoding="utf-8")
    with pytest.raises(DataError, match="not a string"):
        load_split("jsonl", "train", path=str(f))
    f.write_text('{"text": "a", "label": true}\n', encoding="utf-8")
    with pytest.raises(DataError, match="not an integer or a class name"):
        load_split("jsonl", "train", path=str(f))


def test_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no option 'colour'.*valid options: path, text_column"):
        load_split("csv", "train", path="x", colour=1)
    with pytest.raises(ConfigError, match="needs the option 'path'"):
        load_split("csv", "train")
    with pytest.raises(ConfigError, match="has no split 'dev'; valid splits: train, test"):
        load_split("digits", "dev")
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        load_split("nope", "train")


def test_labels_dtype(tmp_path: Path) -> None:
    f = _csv(tmp_path / "a.csv", "text,label\na,1\nb,0\n")
    assert load_split("csv", "train", path=str(f)).labels.dtype == np.int64

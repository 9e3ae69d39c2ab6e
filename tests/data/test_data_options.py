"""One dataset-option vocabulary (`--data-option`, `dataset_options:`) and data-named records/stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _data_helpers import csv_split, image_folder

from aft.cli.main import main
from aft.data import load_split
from aft.data.options import dataset_label, parse_data_options
from aft.errors import ConfigError


def test_parse_data_options_types_and_errors() -> None:
    opts = parse_data_options(["path=data/{split}.csv", "size=16", "name=007", "class_names=[a, b]"])
    assert opts == {"path": "data/{split}.csv", "size": 16, "name": "007", "class_names": ["a", "b"]}
    with pytest.raises(ConfigError, match=r"'pathdata.csv' is not KEY=VALUE; e\.g\. --data-option path=data\.csv"):
        parse_data_options(["pathdata.csv"])


def test_dataset_label_names_the_data_not_the_loader(tmp_path: Path) -> None:
    assert dataset_label("csv", {"path": str(tmp_path / "news-{split}.csv")}) == "news"
    assert dataset_label("csv", {"path": str(tmp_path / "corpus" / "{split}.csv")}) == "corpus"
    assert dataset_label("jsonl", {"path": str(tmp_path / "reviews.jsonl")}) == "reviews"
    assert dataset_label("imagefolder", {"path": str(tmp_path / "pets"), "name": "my-pets"}) == "my-pets"
    assert dataset_label("digits", {}) == "digits"


def test_template_splits_share_class_ids_and_one_name(tmp_path: Path) -> None:
    # the test file lacks class "b": inferred per file it would map "c" to 1 instead of 2
    csv_split(tmp_path / "corpus" / "train.csv", [("x", "a"), ("y", "b"), ("z", "c")])
    csv_split(tmp_path / "corpus" / "test.csv", [("u", "c"), ("v", "a")])
    path = str(tmp_path / "corpus" / "{split}.csv")
    tr, te = load_split("csv", "train", path=path), load_split("csv", "test", path=path)
    assert tr.class_names == te.class_names == ["a", "b", "c"]
    assert te.labels.tolist() == [2, 0]
    assert tr.dataset == te.dataset == "corpus"  # not "train" / "test"
    assert load_split("csv", "train", path=path, name="news").dataset == "news"  # `name` is a loader option too


def test_classes_option_fixes_label_ids(tmp_path: Path) -> None:
    csv_split(tmp_path / "only.csv", [("x", "pos")])
    ds = load_split("csv", "train", path=str(tmp_path / "only.csv"), classes="neg,pos")
    assert ds.class_names == ["neg", "pos"] and ds.labels.tolist() == [1]
    image_folder(tmp_path / "img", {"test": {"b": 2}})
    img = load_split("imagefolder", "test", path=str(tmp_path / "img"), classes=["a", "b", "c"])
    assert img.labels.tolist() == [1, 1] and img.num_classes == 3
    with pytest.raises(ConfigError, match="classes must list distinct class names"):
        load_split("csv", "train", path=str(tmp_path / "only.csv"), classes="a,a")


def test_own_data_through_extract_train_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # the test split lacks class "c"; the labels must still agree with training
    image_folder(tmp_path / "pets", {"train": {"a": 12, "b": 12, "c": 12}, "test": {"a": 4, "b": 4}})
    data = ["--dataset", "imagefolder", "--data-option", f"path={tmp_path / 'pets'}"]
    assert main(["extract", "--teacher", "test-data-tiny", *data, "--split", "train", "--store", "st",
                 "--no-progress", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "pets/train (36 samples" in out and "/pets/" in out.replace("\\", "/")
    # the same flags for train: --teacher and --store, --data-option; the run folder is named after the data
    assert main(["train", *data, "--teacher", "test-data-tiny", "--store", "st", "--method", "aft", "--beta", "1",
                 "--student", "cnn-small", "--steps", "3", "--batch-size", "8", "--no-progress", "--device", "cpu",
                 "--set", "tensorboard=false"]) == 0
    res = json.loads(capsys.readouterr().out)
    run = Path(res["run_dir"])
    assert run.name == "pets-aft-cnn-small"
    assert json.loads((run / "result.json").read_text())["dataset"] == "pets"
    assert (run / "config.yaml").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["dataset_options"] == {"path": str(tmp_path / "pets")}
    # predict reads the same dataset options: every test sample, its true class, the accuracy
    assert main(["predict", "--model", str(run), *data, "--split", "test", "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["input"] for r in rows] == [f"{c}/{i:04d}.png" for c in "ab" for i in range(4)]
    assert {r["true"] for r in rows} == {"a", "b"} and "accuracy" in captured.err and "pets/test" in captured.err


def test_yaml_dataset_options_and_deprecated_teacher_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    image_folder(tmp_path / "pets", {"train": {"a": 6, "b": 6}, "test": {"a": 2, "b": 2}})
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": "imagefolder", "dataset_options": {"path": str(tmp_path / "pets")},
                                   "teachers": ["test-data-tiny"], "feature_store": "st2"}))
    assert main(["extract", "--config", str(cfg), "--no-progress"]) == 0  # dataset, options, teachers from YAML
    assert "pets/train (12 samples" in capsys.readouterr().out
    assert main(["train", "--config", str(cfg), "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dataset_options"] == {"path": str(tmp_path / "pets")} and printed["feature_store"] == "st2"
    assert main(["train", "--config", str(cfg), "--teachers", "test-data-tiny", "--features", "st2",
                 "--data-option", "name=zoo", "--print-config"]) == 0
    captured = capsys.readouterr()
    assert "--teachers is deprecated" in captured.err and "--features is deprecated" in captured.err
    printed = json.loads(captured.out)
    assert printed["dataset_options"]["name"] == "zoo" and printed["output"].endswith("zoo-aft-cnn-small")
    assert main(["train", "--set", "dataset_options=3", "--dataset", "csv", "--print-config"]) == 2
    assert "dataset_options' must be a mapping" in capsys.readouterr().err


def test_compare_takes_the_same_options_and_records_name_the_data(tmp_path: Path) -> None:
    from aft.cli.commands.compare import with_data
    from aft.experiments.grid import _job, settings
    from aft.experiments.suite import SuiteConfig

    suite = SuiteConfig(name="mine", dataset="digits", students=["cnn-small"], teacher_sets=[["t"]],
                        methods=["aft"], train_sizes=[20], folds=2)
    mine = with_data(suite, "csv", [f"path={tmp_path / 'news-{split}.csv'}", "classes=neg,pos"])
    assert mine.dataset == "csv" and mine.dataset_options == {"path": str(tmp_path / "news-{split}.csv"),
                                                              "classes": "neg,pos"}
    job = _job(mine, settings(mine)[0], "aft", 1.0, 0, "final")
    assert job.dataset == "news"  # records say the data's name, not the loader's
    assert _job(suite, settings(suite)[0], "aft", 1.0, 0, "final").dataset == "digits"

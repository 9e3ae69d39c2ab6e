"""Config loading/validation and the errors raised before any training starts."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from _training_helpers import TinyNet

from aft.cli.main import main
from aft.data.split import DatasetSplit
from aft.errors import ConfigError, DataError, FeatureStoreError, OutputExistsError, UnknownNameError
from aft.features import InMemoryFeatures
from aft.training import TrainConfig, load_config, train


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"dataset": "digits", "method": "aft", "beta": 3, "method_options": {"a": 1}}))
    cfg = load_config(f, ["beta=10", "steps=7", "method_options.kernel_form=explicit", "teachers=x,y"])
    assert (cfg.beta, cfg.steps, cfg.teachers) == (10.0, 7, ["x", "y"])
    assert cfg.method_options == {"a": 1, "kernel_form": "explicit"} and isinstance(cfg.beta, float)


@pytest.mark.parametrize("override,key", [("bta=1", "bta"), ("steps=abc", "steps"), ("select=worst", "select"),
                                          ("overwrite=maybe", "overwrite"), ("lr=-1", "lr"),
                                          ("student_options=3", "student_options")])
def test_bad_keys_and_types_name_the_key(override, key):
    with pytest.raises(ConfigError, match=repr(key) if key != "lr" else "lr"):
        load_config(None, [override])


def test_steps_and_epochs_exclusive():
    with pytest.raises(ConfigError, match="steps or epochs"):
        TrainConfig(steps=3, epochs=1.0).validate()


def run(splits, features=None, **kw):
    base = dict(steps=2, batch_size=16, progress=False, tensorboard=False)
    base.update(kw)
    return train(TrainConfig(**base), features=features, train_split=splits[0], student_module=TinyNet())


def test_unknown_method_lists_valid(splits):
    with pytest.raises(UnknownNameError, match="valid methods: .*aft"):
        run(splits, method="aftt")


def test_unknown_student_lists_valid(splits):
    with pytest.raises(UnknownNameError, match="valid students: .*cnn-small"):
        train(TrainConfig(method="none", student="cnn-big", steps=1, progress=False), train_split=splits[0])


def test_negative_beta(splits):
    with pytest.raises(ConfigError, match="beta"):
        run(splits, method="none", beta=-1.0)


def test_empty_training_split():
    empty = DatasetSplit("x", "train", [], np.zeros((0, 8, 8), np.uint8), np.zeros(0, np.int64), ["a", "b"], "image")
    with pytest.raises(DataError, match="empty"):
        train(TrainConfig(method="none", steps=1, progress=False), train_split=empty, student_module=TinyNet(2))


def test_store_not_matching_dataset(splits):
    other = InMemoryFeatures([f"zz{i}" for i in range(5)], np.ones((5, 3), np.float32))
    with pytest.raises(FeatureStoreError, match="does not match"):
        run(splits, other, method="aft")


def test_teacher_not_in_features(splits, features):
    with pytest.raises(ConfigError, match="available: noise, pixels"):
        run(splits, features, method="aft", teachers=["clip"])


def test_method_needs_features(splits):
    with pytest.raises(ConfigError, match="feature_store"):
        run(splits, method="aft")


def test_label_out_of_range():
    with pytest.raises(DataError, match="out of range"):
        DatasetSplit("x", "train", ["a"], np.zeros((1, 8, 8), np.uint8), np.array([3]), ["a", "b"], "image")


def test_output_exists_without_overwrite(tmp_path, splits):
    out = tmp_path / "run"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run(splits, method="none", output=str(out))
    run(splits, method="none", output=str(out), overwrite=True)
    assert (out / "something").exists() and (out / "result.json").exists()  # only run outputs replaced


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["train", "--method", "nope", "--dataset", "digits", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aft: error: unknown method 'nope'") and err.count("\n") == 1
    assert main(["train", "--set", "beta=-2"]) == 2


def test_cli_train_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--dataset", "digits", "--method", "none", "--steps", "3", "--batch-size", "16",
                 "--set", "student_options.image_size=8", "--set", "student_options.width=4", "--set", "train_limit=120",
                 "--set", "test_limit=40", "--output", str(out), "--no-progress", "--set", "tensorboard=false"])
    assert code == 0, capsys.readouterr().err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["student_options"] == {"image_size": 8, "width": 4} and saved["steps"] == 3
    assert main(["train", "--dataset", "digits", "--method", "none", "--output", str(out)]) == 2  # exists

"""`aft datasets list|info` and `dataset_info`."""

from __future__ import annotations

import pytest

from aft.cli.main import main
from aft.data import dataset_info, dataset_names


def test_dataset_info() -> None:
    assert {"fashion-mnist", "spam-assassin", "digits", "csv", "jsonl", "imagefolder"} <= set(dataset_names())
    info = dataset_info("fashion-mnist")
    assert info.num_classes == 10 and info.sizes == {"train": 60000, "test": 10000} and info.asset == "fashion-mnist"
    assert dataset_info("spam-assassin").class_names == ("ham", "spam")
    assert "strip_headers" in dataset_info("spam-assassin").options
    assert dataset_info("csv").num_classes is None


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "list"]) == 0
    assert "spam-assassin" in capsys.readouterr().out
    assert main(["datasets", "info", "csv"]) == 0
    assert "path = (required)" in capsys.readouterr().out
    assert main(["datasets", "info", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err

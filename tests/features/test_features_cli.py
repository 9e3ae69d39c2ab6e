"""`aft extract` on digits with a small registered teacher, and `aft features info`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aft.cli.main import main
from aft.features import FeatureStore, open_features
from aft.teachers import TEACHERS, CallableTeacher

PROJ = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)


def _tiny(**options):
    def fn(images):
        return images.reshape(len(images), -1).astype(np.float32) @ PROJ

    return CallableTeacher(fn, dim=8, modality="image", name="test-tiny-digits", **options)


if "test-tiny-digits" not in TEACHERS:
    TEACHERS.add("test-tiny-digits", _tiny)


@pytest.fixture(scope="module")
def digits():
    data = pytest.importorskip("aft.data")
    try:
        return data.load_split("digits", "train"), data.load_split("digits", "test")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"digits unavailable: {exc}")


def test_extract_cli_on_digits_then_info(tmp_path, capsys, digits):
    argv = ["extract", "--teacher", "test-tiny-digits", "--dataset", "digits", "--split", "train", "--split", "test",
            "--limit", "60", "--seed", "3", "--store", str(tmp_path), "--batch-size", "16", "--no-progress",
            "--dtype", "float32"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "digits/train (60 samples, dim 8)" in lines[0]
    from aft.data import stratified_subsample

    train = stratified_subsample(digits[0], 60, seed=3)  # what the trainer would load
    feats = open_features(tmp_path, ["test-tiny-digits"], train)
    ids = train.ids[::-1]
    expected = train.inputs[train.index_of(ids)].reshape(len(ids), -1).astype(np.float32) @ PROJ
    np.testing.assert_allclose(feats.get(ids), expected, rtol=1e-4, atol=1e-3)

    path = lines[0].rsplit(": ", 1)[1]
    assert main(["features", "info", path, "--verify"]) == 0
    out = capsys.readouterr().out
    assert "test-tiny-digits" in out and "sha256 ok" in out and "60" in out
    assert main(["features", "info", path, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 60 and info["dim"] == 8 and info["split"] == "train"
    assert FeatureStore.open(path).info()["fingerprint"] == train.fingerprint()


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, digits):
    assert main(["features", "info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aft: error: no feature store") and "\n" not in err
    assert main(["extract", "--teacher", "nope", "--dataset", "digits", "--store", str(tmp_path)]) == 2
    assert "unknown teacher 'nope'" in capsys.readouterr().err
    assert main(["extract", "--teacher", "minilm", "--dataset", "digits", "--store", str(tmp_path),
                 "--data-option", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err

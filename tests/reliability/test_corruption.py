"""Checkpoints, saved students and feature stores corrupted on disk (truncated, bytes flipped) are
detected on load with a one-line message; training falls back to the previous good checkpoint."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from aft.cli.main import main
from aft.errors import CheckpointError, FeatureStoreError, UnsafePathError
from aft.features import InMemoryFeatures, extract, open_features
from aft.students.io import load_student
from aft.teachers import build_teacher
from aft.training import TrainConfig, train
from aft.training.checkpoint import load_checkpoint


def flip(path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x10
    path.write_bytes(bytes(data))


def truncate(path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


@pytest.fixture(scope="module")
def small(digits):
    tr = digits[0].subset(np.arange(160))
    rng = np.random.default_rng(0)
    feats = InMemoryFeatures(tr.ids, rng.normal(size=(len(tr), 8)).astype(np.float32), {"t": (0, 8)})
    return tr, feats


def cfg(out, **kw) -> TrainConfig:
    base = dict(method="aft", student="cnn-small", student_options={"image_size": 8, "width": 4, "dropout": 0.2},
                batch_size=32, steps=12, checkpoint_every=4, eval_every=3, select="best", progress=False,
                tensorboard=False, device="cpu", seed=1, output=str(out), test_split=None)
    base.update(kw)
    return TrainConfig(**base)


class Stop(RuntimeError):
    pass


def stop_at(k):
    def hook(step, _):
        if step == k:
            raise Stop
    return hook


def weights(result) -> dict[str, torch.Tensor]:
    return {**result.student.state_dict(), **{f"reg.{k}": v for k, v in result.regularizer.state_dict().items()}}


@pytest.fixture(scope="module")
def reference(small, tmp_path_factory):
    tr, feats = small
    return weights(train(cfg(tmp_path_factory.mktemp("ref") / "run"), features=feats, train_split=tr))


@pytest.mark.parametrize("damage", [flip, truncate], ids=["bytes-flipped", "truncated"])
def test_corrupt_checkpoint_falls_back_to_previous(tmp_path, small, reference, damage, caplog):
    tr, feats = small
    with pytest.raises(Stop):
        train(cfg(tmp_path / "run"), features=feats, train_split=tr, on_step=stop_at(10))
    ck = tmp_path / "run" / "checkpoints"
    assert torch.load(ck / "checkpoint.pt", weights_only=True)["step"] == 8
    damage(ck / "checkpoint.pt")
    with caplog.at_level(logging.WARNING, logger="aft.training.checkpoint"):
        assert load_checkpoint(ck)["step"] == 4  # the previous good one
    assert "checkpoint.pt is unreadable" in caplog.text
    resumed = train(cfg(tmp_path / "run", resume=True), features=feats, train_split=tr)
    got = weights(resumed)
    assert all(torch.equal(got[k], reference[k]) for k in reference)


def test_both_checkpoints_corrupt_is_one_clear_error(tmp_path, small, capsys):
    tr, feats = small
    with pytest.raises(Stop):
        train(cfg(tmp_path / "run"), features=feats, train_split=tr, on_step=stop_at(10))
    ck = tmp_path / "run" / "checkpoints"
    flip(ck / "checkpoint.pt")
    truncate(ck / "checkpoint.prev.pt")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint .*checkpoint\.pt: sha256 does not match") as err:
        train(cfg(tmp_path / "run", resume=True), features=feats, train_split=tr)
    assert "\n" not in str(err.value)


def test_checkpoint_written_without_sidecar_still_loads(tmp_path, small):
    """Checkpoints from before checksums.json existed load (torch.load weights_only=True only)."""
    tr, feats = small
    with pytest.raises(Stop):
        train(cfg(tmp_path / "run"), features=feats, train_split=tr, on_step=stop_at(5))
    (tmp_path / "run" / "checkpoints" / "checksums.json").unlink()
    assert load_checkpoint(tmp_path / "run" / "checkpoints")["step"] == 4


@pytest.mark.parametrize("damage", [flip, truncate], ids=["bytes-flipped", "truncated"])
def test_corrupt_saved_student(tmp_path, small, damage, capsys):
    tr, feats = small
    train(cfg(tmp_path / "run", steps=2, select="last"), features=feats, train_split=tr)
    damage(tmp_path / "run" / "student.safetensors", **({"offset": 3} if damage is flip else {}))
    with pytest.raises(CheckpointError, match="unreadable"):
        load_student(tmp_path / "run")
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "run"), "--texts", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aft: error:") and err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------ feature stores
@pytest.fixture
def store(tmp_path, digits):
    split = digits[1]  # the whole named split: what `aft train` looks up
    (path,) = extract(build_teacher("rp-image"), split, tmp_path / "store", progress=False)
    return split, tmp_path / "store", path


@pytest.mark.parametrize("target, damage, message", [
    ("features.bin", truncate, r"features\.bin has \d+ bytes, expected \d+ .*truncated or corrupt"),
    ("features.bin", flip, r"features\.bin fails its sha256 check"),
    ("ids.json", flip, r"ids\.json (fails its sha256 check|is unreadable)"),
    ("manifest.json", truncate, r"manifest .* is unreadable"),
], ids=["array-truncated", "array-bytes-flipped", "ids-bytes-flipped", "manifest-truncated"])
def test_corrupt_store_detected_on_open(store, target, damage, message):
    split, root, path = store
    damage(path / target)
    with pytest.raises(FeatureStoreError, match=message) as err:
        open_features(root, ["rp-image"], split)
    assert "\n" not in str(err.value) and "aft extract" in str(err.value)


def test_manifest_cannot_point_outside_its_store(store, tmp_path):
    split, root, path = store
    (tmp_path / "outside.json").write_text(json.dumps(split.ids))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["ids"]["file"] = "../../../../outside.json"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnsafePathError, match="escapes"):
        open_features(root, ["rp-image"], split)
    manifest["ids"]["file"] = str(tmp_path / "outside.json")  # absolute
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnsafePathError, match="relative name"):
        open_features(root, ["rp-image"], split)


def test_train_cli_on_corrupt_store_exits_2(store, tmp_path, capsys):
    split, root, path = store
    flip(path / "features.bin")
    capsys.readouterr()
    rc = main(["train", "--dataset", "digits", "--set", "train_split=test", "--set", "test_split=null",
               "--method", "aft", "--teacher", "rp-image", "--store", str(root), "--steps", "2",
               "--train-limit", "100", "--output", str(tmp_path / "run"), "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "sha256" in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()

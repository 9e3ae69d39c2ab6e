"""`cnn-small-pt`: weights built once from a hashed recipe, cached as safetensors, verified, transferred."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from aft.errors import AssetError, ConfigError
from aft.students import build_student
from aft.students.pretrained import (
    RECIPE_FILE,
    PretrainRecipe,
    default_recipe,
    pretrained_cnn_weights,
)

pytest.importorskip("sklearn")

#: a tiny recipe on scikit-learn digits (no asset needed): a few seconds on one core
TINY = PretrainRecipe(source="digits", width=4, feature_dim=8, image_size=8, num_images=300, epochs=2,
                      batch_size=64, seed=3)


def test_recipe_hash_is_canonical_and_changes_with_every_field() -> None:
    base = default_recipe("fashion-mnist")
    assert base.sha256 == default_recipe("fashion-mnist").sha256 and len(base.sha256) == 64
    changed = {replace(base, **{k: v}).sha256 for k, v in
               [("epochs", 3), ("seed", 1), ("lr", 0.001), ("width", 32), ("num_images", 100), ("source", "digits")]}
    assert len(changed) == 6 and base.sha256 not in changed
    assert base.folder("/c").name == f"cnn-small-fashion-mnist-{base.sha256[:12]}"
    with pytest.raises(ConfigError, match="unknown pre-training source 'mnist'; valid: fashion-mnist, digits"):
        default_recipe("mnist")
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        replace(base, epochs=0)


def test_weights_are_built_once_recorded_and_reused(tmp_path: Path) -> None:
    path = pretrained_cnn_weights(TINY, tmp_path)
    meta = json.loads((path.parent / RECIPE_FILE).read_text())
    assert meta["recipe_sha256"] == TINY.sha256 and meta["recipe"]["seed"] == 3
    assert meta["num_images"] == 300 and 0.0 <= meta["source_train_accuracy"] <= 1.0
    mtime = path.stat().st_mtime_ns
    assert pretrained_cnn_weights(TINY, tmp_path) == path and path.stat().st_mtime_ns == mtime  # not retrained
    # the same recipe in another cache gives the same bytes (seeded, reproducible)
    again = pretrained_cnn_weights(TINY, tmp_path / "other")
    assert again.read_bytes() == path.read_bytes()
    from safetensors.torch import load_file

    assert sorted({k.split(".")[0] for k in load_file(str(path))}) == ["body", "hidden"]  # no head


def test_modified_weights_are_refused(tmp_path: Path) -> None:
    path = pretrained_cnn_weights(TINY, tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AssetError, match=r"differs from the sha256 recorded .* delete .* to rebuild"):
        pretrained_cnn_weights(TINY, tmp_path)


def test_student_starts_from_the_pretrained_body_and_a_new_head(tmp_path: Path) -> None:
    path = pretrained_cnn_weights(TINY, tmp_path)
    from safetensors.torch import load_file

    saved = load_file(str(path))
    torch.manual_seed(0)
    pt = build_student("cnn-small-pt", 3, width=4, feature_dim=8, image_size=8, weights=str(path))
    torch.manual_seed(0)
    scratch = build_student("cnn-small", 3, width=4, feature_dim=8, image_size=8)
    for k, v in saved.items():
        torch.testing.assert_close(pt.state_dict()[k], v)
        assert not torch.equal(scratch.state_dict()[k], v)
    torch.testing.assert_close(pt.head.weight, scratch.head.weight)  # the head is the random init
    x = torch.rand(4, 1, 8, 8)
    assert not torch.allclose(pt(x)[1], scratch(x)[1])
    with pytest.raises(AssetError, match="do not fit cnn-small width=8"):
        build_student("cnn-small-pt", 3, width=8, feature_dim=8, image_size=8, weights=str(path))
    with pytest.raises(AssetError, match="does not exist"):
        build_student("cnn-small-pt", 3, weights=str(tmp_path / "missing.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(AssetError, match="unreadable"):
        build_student("cnn-small-pt", 3, width=4, feature_dim=8, image_size=8, weights=str(bad))


def _probe_accuracy(student, train, test) -> float:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    student.eval()
    with torch.no_grad():
        f_train = student.body(student.preprocess(train.inputs)).numpy()
        f_test = student.body(student.preprocess(test.inputs)).numpy()
    return float(LogisticRegression(max_iter=3000).fit(f_train, train.labels).score(f_test, test.labels))


@pytest.mark.slow
@pytest.mark.assets
def test_fashion_mnist_pretraining_gives_better_digit_features_than_random_init(real_asset) -> None:  # type: ignore[no-untyped-def]
    """The committed recipe (built once, ~1.5 min on one core, then cached): on digits at 100 labels a
    linear probe on the pre-trained conv features beats one on randomly initialized features."""
    real_asset("fashion-mnist")
    from aft.data import load_split, stratified_subsample

    train, test = load_split("digits", "train"), load_split("digits", "test")
    gaps = []
    for seed in (0, 1, 2):
        sub = stratified_subsample(train, 100, seed=seed)
        torch.manual_seed(seed)
        pt = build_student("cnn-small-pt", 10, width=16, image_size=16)
        torch.manual_seed(seed)
        scratch = build_student("cnn-small", 10, width=16, image_size=16)
        gaps.append(_probe_accuracy(pt, sub, test) - _probe_accuracy(scratch, sub, test))
    assert np.mean(gaps) > 0.05, gaps

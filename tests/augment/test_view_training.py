"""Training with K views: each step draws views, augments the student input and reads that view's features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from aft.augment import build_policy, draw_views
from aft.data.split import DatasetSplit
from aft.errors import ConfigError, FingerprintMismatchError
from aft.features import InMemoryFeatures, extract
from aft.students.module import default_preprocess
from aft.teachers import CallableTeacher
from aft.training import TrainConfig, train

K = 4
POLICY = build_policy("image-basic")  # what the loop builds for augmentation=image-basic


def digits(n: int = 160, offset: int = 0, split: str = "train") -> DatasetSplit:
    from sklearn.datasets import load_digits

    d = load_digits()
    sel = np.arange(offset, offset + n)
    imgs = (d.images[sel] / 16 * 255).astype(np.uint8)
    return DatasetSplit("digits", split, [f"d{i}" for i in sel], imgs, d.target[sel].astype(np.int64),
                        [str(i) for i in range(10)], "image")


def project(images: np.ndarray) -> np.ndarray:
    w = np.random.default_rng(5).normal(size=(64, 8)).astype(np.float32)
    return images.reshape(len(images), -1).astype(np.float32) / 255.0 @ w


def view_features(split: DatasetSplit, policy=POLICY, k: int = K) -> np.ndarray:
    """(N, K, d): the teacher (a fixed projection) on every view of every sample."""
    return np.stack([project(policy.apply(split.inputs, split.ids, [v] * len(split))) for v in range(k)], axis=1)


class SpyFeatures(InMemoryFeatures):
    """Records every (ids, views) lookup the trainer makes."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.calls: list[tuple[list[str], np.ndarray | None]] = []

    def get(self, ids, views=None):
        self.calls.append((list(ids), None if views is None else np.asarray(views).copy()))
        return super().get(ids, views)


class SpyNet(nn.Module):
    """64 -> 16 -> 10, recording the training-mode inputs it sees."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh())
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(16, 10)
        self.seen: list[torch.Tensor] = []
        self.seen_eval: list[torch.Tensor] = []

    def forward(self, x):
        (self.seen if self.training else self.seen_eval).append(x.detach().clone())
        z = self.body(x)
        return self.head(self.drop(z)), z


def cfg(**kw) -> TrainConfig:
    base = dict(batch_size=16, steps=8, lr=1e-2, beta=1.0, progress=False, tensorboard=False, seed=3, val_fraction=0.0,
                views=K, augmentation="image-basic")
    base.update(kw)
    return TrainConfig(**base)


def test_draw_views_is_pure_and_covers_all_views():
    state = np.random.get_state()
    a = draw_views(3, 17, 64, 8)
    assert np.array_equal(a, draw_views(3, 17, 64, 8)) and a.dtype == np.int64
    assert set(a.tolist()) == set(range(8))
    assert not np.array_equal(a, draw_views(3, 18, 64, 8)) and not np.array_equal(a, draw_views(4, 17, 64, 8))
    assert (draw_views(3, 17, 64, 1) == 0).all()
    assert np.array_equal(np.random.get_state()[1], state[1])  # global RNG untouched


def test_each_step_pairs_the_augmented_input_with_that_views_features():
    split = digits()
    feats = SpyFeatures(split.ids, view_features(split, POLICY))
    net = SpyNet()
    train(cfg(method="aft", augmentation=None), features=feats, train_split=split,  # default: image-basic
          student_module=net)
    policy = POLICY
    steps = [(ids, v) for ids, v in feats.calls if v is not None]
    assert len(steps) == 8 and len(net.seen) == 8  # one lookup and one forward per step
    requested = np.concatenate([v for _, v in steps])
    assert set(requested.tolist()) == set(range(K))  # views 1..K-1 are read, not only view 0
    for step, ((ids, views), x) in enumerate(zip(steps, net.seen, strict=True)):
        assert np.array_equal(views, draw_views(3, step, len(ids), K))
        raw = split.inputs[split.index_of(ids)]
        expected = default_preprocess(policy.apply(raw, ids, views))
        assert torch.equal(x, expected)  # the student saw exactly view `views[i]` of sample i
        assert not torch.equal(x, default_preprocess(raw)) or (views == 0).all()


def test_features_match_the_augmented_inputs_through_a_teacher_of_the_input():
    """With a teacher that is the identity on pixels, psi of every step equals the student's input."""
    split = digits(96)
    policy = POLICY
    full = np.stack([policy.apply(split.inputs, split.ids, [v] * len(split)).reshape(len(split), -1) / 255.0
                     for v in range(K)], axis=1).astype(np.float32)
    feats = SpyFeatures(split.ids, full)
    seen_psi = []
    orig_get = feats.get

    def get(ids, views=None):
        out = orig_get(ids, views)
        if views is not None:
            seen_psi.append(out)
        return out

    feats.get = get  # type: ignore[method-assign]
    net = SpyNet()
    train(cfg(method="aft", steps=4), features=feats, train_split=split, student_module=net)
    for x, psi in zip(net.seen, seen_psi, strict=True):
        np.testing.assert_allclose(x.reshape(len(x), -1).numpy(), psi, atol=1e-6)


def test_evaluation_uses_clean_view_and_stl_gets_the_same_augmentation():
    split, test = digits(128), digits(40, offset=200, split="test")
    net = SpyNet()
    train(cfg(method="none", steps=5, val_fraction=0.2), train_split=split, test_split=test, student_module=net)
    clean_test = default_preprocess(test.inputs)
    assert any(x.shape == clean_test.shape and torch.equal(x, clean_test) for x in net.seen_eval)
    # STL (no teacher, no features) trains on augmented views: some training inputs are no clean sample
    clean_rows = {r.numpy().tobytes() for r in default_preprocess(split.inputs)}
    augmented = sum(r.numpy().tobytes() not in clean_rows for x in net.seen for r in x)
    assert augmented > len(net.seen)


def test_resume_with_views_is_bit_identical(tmp_path):
    split = digits()
    feats = InMemoryFeatures(split.ids, view_features(split))
    kw = dict(method="aft", steps=10, checkpoint_every=3, val_fraction=0.15, eval_every=4, select="best")

    def net():
        torch.manual_seed(0)
        return SpyNet(dropout=0.3)

    full = train(cfg(output=str(tmp_path / "full"), **kw), features=feats, train_split=split, student_module=net())

    class Stop(RuntimeError):
        pass

    def die(step, _):
        if step == 7:
            raise Stop

    with pytest.raises(Stop):
        train(cfg(output=str(tmp_path / "cut"), **kw), features=feats, train_split=split, student_module=net(),
              on_step=die)
    resumed = train(cfg(output=str(tmp_path / "cut"), resume=True, **kw), features=feats, train_split=split,
                    student_module=net())
    for a, b in ((full.student, resumed.student), (full.regularizer, resumed.regularizer)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert full.selected_step == resumed.selected_step


def test_loop_opens_the_views_store_by_name_and_refuses_mismatches(tmp_path):
    split = digits(120)
    teacher = CallableTeacher(project, dim=8, modality="image", name="proj")
    extract(teacher, split, tmp_path, views=3, augmentation="image-basic", progress=False)
    res = train(cfg(method="aft", views=3, steps=3, feature_store=str(tmp_path), teachers=["proj"]),
                train_split=split)
    assert res.steps == 3
    with pytest.raises(FingerprintMismatchError, match="num_views"):
        train(cfg(method="aft", views=2, steps=3, feature_store=str(tmp_path), teachers=["proj"]), train_split=split)
    with pytest.raises(ConfigError, match="hold 1 view"):
        train(cfg(method="aft", steps=2), features=InMemoryFeatures(split.ids, project(split.inputs)),
              train_split=split)
    with pytest.raises(ConfigError, match="views must be >= 1"):
        TrainConfig(views=0).validate()
    with pytest.raises(ConfigError, match="text"):
        train(cfg(method="none", augmentation="text-crop", steps=2), train_split=split)

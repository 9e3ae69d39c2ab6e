"""A comparison's feature stores are a cache: a store of an older teacher version is re-extracted, not an error."""

from __future__ import annotations

import logging

import numpy as np

from aft.experiments.executor import TrainingExecutor
from aft.experiments.suite import SuiteConfig
from aft.features import open_features


def _teacher(version: str, scale: float):
    from aft.teachers.base import CallableTeacher

    def fn(images: np.ndarray) -> np.ndarray:
        return scale * np.asarray(images, dtype=np.float32).reshape(len(images), -1)[:, :8] / 255.0

    return CallableTeacher(fn, dim=8, modality="image", name="stale-t", version=version)


def test_older_teacher_version_is_re_extracted(tmp_path, monkeypatch, caplog):
    from aft.teachers import base

    suite = SuiteConfig.from_dict(dict(name="stale", dataset="digits", students=["cnn-small"], teacher_sets=[["stale-t"]],
                                       methods=["none", "aft"], train_sizes=[40], pool_size=40, test_limit=50,
                                       seeds=[0], beta_grid=[1.0], probe=True))
    ex = TrainingExecutor(suite, tmp_path / "store", progress=False)
    for version, scale in (("1", 1.0), ("2", 3.0)):
        monkeypatch.setattr(base, "build_teacher", lambda name, v=version, s=scale, **_: _teacher(v, s))
        import aft.teachers

        monkeypatch.setattr(aft.teachers, "build_teacher", lambda name, v=version, s=scale, **_: _teacher(v, s))
        with caplog.at_level(logging.WARNING, logger="aft.experiments.executor"):
            ex.prepare_features()
    assert any("re-extracting" in r.getMessage() for r in caplog.records)
    got = open_features(tmp_path / "store", ["stale-t"], ex.data().pool).get(ex.data().pool.ids[:3])
    want = 3.0 * np.asarray(ex.data().pool.inputs[:3], dtype=np.float32).reshape(3, -1)[:, :8] / 255.0
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)  # the version-2 features (float16 store)

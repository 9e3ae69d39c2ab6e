"""The real offline teachers (MiniLM, EfficientNet-Lite0, WordLlama) on a handful of inputs; skipped if unavailable."""

from __future__ import annotations

import os

import numpy as np
import pytest

from aft.errors import AftError
from aft.teachers import build_teacher

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.assets


def _build(name, module, **options):
    pytest.importorskip(module)
    try:
        return build_teacher(name, **options)
    except (AftError, OSError, ImportError) as exc:
        pytest.skip(f"{name} unavailable offline: {exc}")


def test_minilm_sentence_similarity():
    t = _build("minilm", "sentence_transformers")
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today."]
    with torch.inference_mode():
        f = t.encode(texts)
    assert f.shape == (3, 384) and f.dtype == np.float32 and t.dim == 384
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-4)  # the model normalizes
    sim = f @ f.T
    assert sim[0, 1] > sim[0, 2] + 0.2


def test_efficientnet_lite0_on_digits_sized_images():
    t = _build("efficientnet-lite0", "efficientnet_lite_pytorch", resolution=64)
    imgs = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8), dtype=np.uint8)
    with torch.inference_mode():
        a = t.encode(imgs)
        b = t.encode(imgs[::-1].copy())
    assert a.shape == (3, 1280) and np.isfinite(a).all() and a.std() > 0
    np.testing.assert_allclose(a[::-1], b, rtol=1e-4, atol=1e-5)  # per-sample, order independent
    assert t.preprocess_config()["resolution"] == 64
    rgb = np.repeat(imgs[..., None], 3, axis=-1)
    with torch.inference_mode():
        np.testing.assert_allclose(t.encode(rgb), a, rtol=1e-4, atol=1e-5)  # gray == its RGB repeat


def test_wordllama_embeds():
    t = _build("wordllama", "wordllama")
    f = t.encode(["hello world", "a much longer sentence about cats"])
    assert f.shape == (2, 256) and np.isfinite(f).all()

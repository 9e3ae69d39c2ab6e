"""timm and open_clip teachers against the real libraries (random weights, small inputs).

They need torchvision, which cannot sit beside the main environment's CPU torch: they run in the
second environment (``.venv-full``, scripts/setup-full.sh; ``pytest -m full``) and skip here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aft.errors import ConfigError
from aft.teachers import build_teacher

pytestmark = pytest.mark.full
timm = pytest.importorskip("timm", reason="needs timm + torchvision: runs in .venv-full (scripts/setup-full.sh)")

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(2, 40, 36, 3), dtype=np.uint8)


def _reference(model, images, size, mean, std):
    """The features by hand: resize, normalize, forward_head(forward_features(x), pre_logits=True)."""
    x = torch.from_numpy(images).float().div(255).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.inference_mode():
        return model.forward_head(model.forward_features(x), pre_logits=True).numpy()


@pytest.mark.parametrize(("arch", "kwargs", "width"), [
    ("resnet18", {}, 512),
    ("mobilenetv3_small_050", {}, 1024),  # the head stage: num_features (288) is not the pooled width
    ("convnext_atto", {}, 320),
    ("vit_small_patch14_dinov2", {"img_size": 42}, 384),
])
def test_timm_teacher_width_and_features(arch, kwargs, width):
    t = build_teacher(f"timm:{arch}", pretrained=False, **kwargs)
    assert t.dim == width and t.modality == "image"
    if "img_size" in kwargs:
        assert t.resolution == 42 and "img_size=42" in t.name
    feats = t.encode(IMAGES)
    assert feats.shape == (2, width) and np.isfinite(feats).all()
    if t.interpolation == "bicubic":
        ref = _reference(t.model, IMAGES, t.resolution, t.mean, t.std)
        np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-4)
    gray = t.encode(IMAGES[..., 0])
    np.testing.assert_allclose(gray, t.encode(np.repeat(IMAGES[..., :1], 3, -1)), atol=1e-5)


def test_timm_intermediate_layers_as_blocks():
    t = build_teacher("timm:resnet18?pretrained=false&layers=2,-1")
    assert t.dim == 128 + 512 and t.preprocess_config()["blocks"] == {"layer=2": [0, 128], "layer=-1": [128, 640]}
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        maps = t.model.forward_intermediates(x, indices=[2, 4], intermediates_only=True)
        ref = torch.cat([m.mean((2, 3)) for m in maps], 1).numpy()
        got = torch.cat(t._blocks(x), 1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    vit = build_teacher("timm:vit_small_patch14_dinov2", pretrained=False, img_size=42, layers=[5])
    assert vit.dim == 384 and vit.name != build_teacher("timm:vit_small_patch14_dinov2", pretrained=False,
                                                         img_size=42).name


def test_timm_student_mobilenetv3_trains_a_step():
    """`--student timm:mobilenetv3_small_050` crashed with a shape error (2x1024 and 288x10)."""
    from aft.students import build_student

    s = build_student("timm:mobilenetv3_small_050", num_classes=10, pretrained=False, image_size=64)
    x = s.preprocess(np.zeros((2, 28, 28), np.uint8))
    logits, feats = s(x)
    assert logits.shape == (2, 10) and feats.shape == (2, 1024) and s.feature_dim == 1024
    logits.sum().backward()


def test_unknown_timm_model_is_one_line():
    with pytest.raises(ConfigError, match="unavailable"):
        build_teacher("timm:not_a_model_xyz", pretrained=False)


open_clip = pytest.importorskip("open_clip")


@pytest.mark.parametrize(("arch", "image_size"), [("ViT-B-32", 64), ("RN50", 64)])
def test_open_clip_image_and_text(arch, image_size):
    img = build_teacher(f"open_clip:{arch}", image_size=image_size)
    assert img.dim == 512 if arch == "ViT-B-32" else img.dim == 1024
    feats = img.encode(IMAGES)
    assert feats.shape == (2, img.dim) and np.isfinite(feats).all()
    from PIL import Image

    px = torch.stack([img.transform(Image.fromarray(a)) for a in IMAGES])
    with torch.inference_mode():
        ref = img.model.encode_image(px).numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-4)
    if arch == "RN50":
        return  # one text tower is enough (they share the code path)
    txt = build_teacher(f"open_clip:{arch}?modality=text&image_size={image_size}")
    texts = ["a photo of a cat", "dog"]
    both = txt.encode(texts)
    np.testing.assert_allclose(txt.encode(texts[1:])[0], both[1], atol=1e-5)  # fixed-length padding
    assert both.shape == (2, 512) and txt.name != img.name

"""Pre-trained students by name: ``hf:<folder>`` text and image encoders, ``timm:<name>``, on tiny local models.

Marked ``full``: they run in both environments (the timm ones only where timm is installed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aft.errors import ConfigError
from aft.students import build_student
from aft.training import load_student, save_student

transformers = pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "teachers"))
import _tiny_hf as tiny  # noqa: E402

pytestmark = pytest.mark.full
IMAGES = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize(("family", "pick"), [("vit", "cls"), ("convnext", "pooler"), ("dinov2", "cls")])
def test_hf_image_student_features_are_the_head_input(tmp_path, family, pick):
    folder = tiny.VISION[family](tmp_path / family)
    s = build_student(f"hf:{folder}", num_classes=3)
    assert s.modality == "image" and s.options["model_id"] == str(folder)
    x = s.preprocess(IMAGES)  # the model's own image processor (gray -> RGB, resize, normalize)
    proc = transformers.AutoImageProcessor.from_pretrained(folder)
    ref_x = proc(images=[np.repeat(a[..., None], 3, -1) for a in IMAGES], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(x, ref_x)
    s.eval()
    with torch.no_grad():
        logits, feats = s(x)
        out = transformers.AutoModel.from_pretrained(folder).eval()(pixel_values=x)
    ref = out.pooler_output.flatten(1) if pick == "pooler" else out.last_hidden_state[:, 0]
    torch.testing.assert_close(feats, ref, rtol=1e-4, atol=1e-5)
    assert logits.shape == (3, 3) and s.feature_dim == ref.shape[1]
    torch.testing.assert_close(logits, s.head(ref), rtol=1e-4, atol=1e-5)
    save_student(s, tmp_path / "run")
    again = load_student(tmp_path / "run")
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], logits)


def test_hf_text_student_mean_pools_a_tiny_bert(tmp_path):
    folder = tiny.bert(tmp_path / "bert")
    s = build_student(f"hf:{folder}", num_classes=2, max_len=12).eval()
    x = s.preprocess(["dog ran", "the cat sat on a mat"])
    with torch.no_grad():
        _, feats = s(x)
        hidden = transformers.AutoModel.from_pretrained(folder).eval()(
            input_ids=torch.tensor([[tiny.VOCAB[w] for w in ["[CLS]", "dog", "ran", "[SEP]"]]])).last_hidden_state
    torch.testing.assert_close(feats[0], hidden[0].mean(0), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="masked mean"):
        build_student(f"hf:{folder}", num_classes=2, pooling="cls")


def test_timm_student_uses_its_data_config():
    pytest.importorskip("timm", reason="needs timm + torchvision: runs in .venv-full (scripts/setup-full.sh)")
    import timm

    s = build_student("timm:resnet18", num_classes=4, pretrained=False, image_size=32).eval()
    cfg = timm.data.resolve_data_config({}, model=s.backbone)
    torch.testing.assert_close(s.mean.flatten(), torch.tensor(cfg["mean"]))
    x = s.preprocess(IMAGES)
    assert x.shape == (3, 3, 32, 32)
    with torch.no_grad():
        logits, feats = s(x)
        ref = s.backbone.forward_head(s.backbone.forward_features((x - s.mean) / s.std), pre_logits=True)
    torch.testing.assert_close(feats, ref)
    assert feats.shape == (3, 512) and logits.shape == (3, 4)

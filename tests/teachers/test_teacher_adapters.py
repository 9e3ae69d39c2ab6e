"""Teacher registry and adapters: callable/module wrappers, hf: and st: on tiny local models (timm: test_timm_openclip.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from aft.errors import ConfigError, UnknownNameError
from aft.teachers import (
    TEACHERS,
    CallableTeacher,
    ModuleTeacher,
    build_teacher,
    images_to_tensor,
    teacher_slug,
)

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_registry_names_and_unknown_errors():
    with pytest.raises(UnknownNameError, match="valid teachers: .*efficientnet-lite0.*minilm.*wordllama"):
        build_teacher("resnet-9000")
    with pytest.raises(UnknownNameError, match="valid prefixes: hf:, open_clip:, st:, timm:"):
        build_teacher("xyz:model")
    for name in ("minilm", "mpnet", "wordllama", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
        assert name in TEACHERS


def test_slug_is_filesystem_safe_and_distinct():
    a, b = teacher_slug("st:/models/a b"), teacher_slug("st:/models/a_b")
    assert a != b and "/" not in a and ":" not in a
    assert teacher_slug("efficientnet-lite0") == "efficientnet-lite0"


def test_images_to_tensor_gray_and_rgb():
    gray = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    x = images_to_tensor(gray)
    assert x.shape == (1, 3, 2, 2) and torch.equal(x[0, 0], x[0, 2])
    assert x[0, 1, 1, 0].item() == pytest.approx(0.2)
    rgb = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    rgb[..., 2] = 255
    y = images_to_tensor(rgb)
    assert y.shape == (2, 3, 4, 5) and y[:, 2].min() == 1 and y[:, :2].max() == 0
    with pytest.raises(ConfigError, match="uint8"):
        images_to_tensor(gray.astype(np.float32))


def test_callable_teacher_checks_its_output():
    t = CallableTeacher(lambda xs: np.ones((len(xs), 2)), dim=3, modality="text", name="bad")
    with pytest.raises(ConfigError, match=r"expected \(2, 3\)"):
        t.encode(["a", "b"])


def test_module_teacher_pools_maps_and_versions_by_weights():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, kernel_size=1)
    t = ModuleTeacher(net, dim=4, modality="image", name="conv")
    imgs = np.random.default_rng(0).integers(0, 256, size=(3, 5, 5), dtype=np.uint8)
    with torch.inference_mode():
        got = t.encode(imgs)
    x = torch.from_numpy(imgs).float().div(255)[:, None].expand(-1, 3, -1, -1)
    expected = net(x).mean((2, 3)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    v1 = t.version
    with torch.no_grad():
        net.bias.add_(1.0)
    assert ModuleTeacher(net, dim=4, name="conv").version != v1
    with pytest.raises(ConfigError, match="texts"):
        t.encode(["not an image"])


# ---------------------------------------------------------------------------- hf: and st:
@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 16-dim BERT with a WordLevel tokenizer, saved locally (no network)."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, processors

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64)
    transformers.BertModel(cfg).eval().save_pretrained(folder)
    return folder


TEXTS = ["the cat sat on a mat", "dog ran", "a dog ran far far away on the mat"]


def test_hf_teacher_mean_and_cls_pooling(tiny_bert):
    from transformers import AutoModel

    t = build_teacher(f"hf:{tiny_bert}")
    assert t.dim == 16 and t.modality == "text" and t.preprocess_config()["pooling"] == "mean"
    with torch.inference_mode():
        feats = t.encode(TEXTS)
        alone = t.encode(TEXTS[1:2])
    assert feats.shape == (3, 16)
    # mean pooling ignores padding: a short text gives the same features alone or padded in a batch
    np.testing.assert_allclose(feats[1], alone[0], atol=1e-5)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    ids = torch.tensor([[2, 5 + 6, 5 + 7, 3]])  # [CLS] dog ran [SEP]
    with torch.inference_mode():
        ref = model(input_ids=ids).last_hidden_state
    np.testing.assert_allclose(alone[0], ref[0].mean(0).numpy(), atol=1e-5)
    cls = build_teacher(f"hf:{tiny_bert}", pooling="cls")
    with torch.inference_mode():
        np.testing.assert_allclose(cls.encode(TEXTS[1:2])[0], ref[0, 0].numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="pooling"):
        build_teacher(f"hf:{tiny_bert}", pooling="max")


def test_st_teacher_on_a_locally_saved_model(tiny_bert, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # older sentence-transformers
        from sentence_transformers.models import Pooling, Transformer
    word = Transformer(str(tiny_bert), max_seq_length=32)
    getdim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pool = Pooling(getdim(), pooling_mode="mean")
    st.SentenceTransformer(modules=[word, pool], device="cpu").save(str(tmp_path / "st"))
    t = build_teacher(f"st:{tmp_path / 'st'}")
    assert t.dim == 16 and t.name == f"st:{tmp_path / 'st'}"
    hf = build_teacher(f"hf:{tiny_bert}")
    with torch.inference_mode():
        np.testing.assert_allclose(t.encode(TEXTS), hf.encode(TEXTS), atol=1e-5)
    assert t.version.startswith("sentence-transformers=")
    normed = build_teacher(f"st:{tmp_path / 'st'}", normalize=True)
    with torch.inference_mode():
        np.testing.assert_allclose(np.linalg.norm(normed.encode(TEXTS), axis=1), 1.0, rtol=1e-5)

"""``hf:`` teachers on tiny random transformers models of each family (config -> save_pretrained -> by path).

Vision encoders (ViT, DINOv2, CLIP / SigLIP towers, ConvNeXt) with their own image processors,
CLIP / SigLIP dual encoders, decoder LLMs (GPT-2, Llama, Qwen2) and intermediate layers. Marked
``full``: they also run in the second environment (torch 2.14, scripts/setup-full.sh).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aft.errors import ConfigError
from aft.teachers import build_teacher

transformers = pytest.importorskip("transformers")
import _tiny_hf as tiny  # noqa: E402

pytestmark = pytest.mark.full

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(3, 40, 36, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, size=(2, 28, 28), dtype=np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each tiny model saved once per module: name -> folder."""
    root = tmp_path_factory.mktemp("tiny-hf")
    builders = {**tiny.VISION, **tiny.DECODERS, "clip": tiny.clip, "siglip": tiny.siglip, "bert": tiny.bert}
    return {name: build(root / name) for name, build in builders.items()}


def _pixels(folder, images):
    proc = transformers.AutoImageProcessor.from_pretrained(folder)
    rgb = [np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a for a in images]
    return proc(images=rgb, return_tensors="pt")["pixel_values"]


# ------------------------------------------------------------------------------------ vision encoders
@pytest.mark.parametrize(("family", "default"), [("vit", "cls"), ("dinov2", "cls"), ("clip-vision", "pooler"),
                                                 ("siglip-vision", "pooler"), ("convnext", "pooler")])
def test_vision_encoder_default_pooling_matches_the_model(models, family, default):
    folder = models[family]
    t = build_teacher(f"hf:{folder}")
    assert t.modality == "image" and t.preprocess_config()["pooling"] == default and t.name == f"hf:{folder}"
    feats = t.encode(IMAGES)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        out = model(pixel_values=_pixels(folder, IMAGES))
    ref = out.pooler_output.flatten(1) if default == "pooler" else out.last_hidden_state[:, 0]
    assert feats.shape == (3, t.dim) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, ref.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(t.encode(IMAGES), feats)  # deterministic
    g = t.encode(GRAY)  # gray images are repeated to 3 channels
    np.testing.assert_allclose(g[0], t.encode(np.repeat(GRAY[:1, ..., None], 3, -1))[0], atol=1e-6)


def test_vision_poolings_against_a_hand_computation(models):
    folder = models["dinov2"]
    model = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        hidden = model(pixel_values=_pixels(folder, IMAGES)).last_hidden_state.numpy()
    cls, mean = hidden[:, 0], hidden[:, 1:].mean(1)  # DINOv2: 1 CLS token then 16 patch tokens
    assert hidden.shape[1] == 1 + (32 // 8) ** 2
    for pooling, ref in [("cls", cls), ("mean", mean), ("cls+mean", np.concatenate([cls, mean], 1))]:
        t = build_teacher(f"hf:{folder}", pooling=pooling)
        assert t.dim == ref.shape[1]
        np.testing.assert_allclose(t.encode(IMAGES), ref, rtol=1e-4, atol=1e-5)
    # SigLIP has no CLS token: mean pools all tokens, cls is refused
    sig = build_teacher(f"hf:{models['siglip-vision']}", pooling="mean")
    m2 = transformers.AutoModel.from_pretrained(models["siglip-vision"]).eval()
    with torch.inference_mode():
        h2 = m2(pixel_values=_pixels(models["siglip-vision"], IMAGES)).last_hidden_state
    np.testing.assert_allclose(sig.encode(IMAGES), h2.mean(1).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="no CLS token"):
        build_teacher(f"hf:{models['siglip-vision']}", pooling="cls")
    with pytest.raises(ConfigError, match="unknown pooling"):
        build_teacher(f"hf:{folder}", pooling="max")


def test_vision_intermediate_layers_are_blocks_and_change_the_name(models):
    folder = models["vit"]
    model = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        hs = model(pixel_values=_pixels(folder, IMAGES), output_hidden_states=True).hidden_states
    one = build_teacher(f"hf:{folder}", layers=1, pooling="mean")
    np.testing.assert_allclose(one.encode(IMAGES), hs[1][:, 1:].mean(1).numpy(), rtol=1e-4, atol=1e-5)
    two = build_teacher(f"hf:{folder}?layers=1+-1&pooling=cls")
    assert two.dim == 32 and two.preprocess_config()["blocks"] == {"layer=1": [0, 16], "layer=-1": [16, 32]}
    ref = np.concatenate([hs[1][:, 0].numpy(), hs[-1][:, 0].numpy()], 1)
    np.testing.assert_allclose(two.encode(IMAGES), ref, rtol=1e-4, atol=1e-5)
    names = {one.name, two.name, build_teacher(f"hf:{folder}").name}
    assert len(names) == 3 and "layers=1" in one.name
    with pytest.raises(ConfigError, match="out of range"):
        build_teacher(f"hf:{folder}", layers=7, pooling="cls")
    with pytest.raises(ConfigError, match="final output only"):
        build_teacher(f"hf:{folder}", layers=1, pooling="pooler")
    conv = build_teacher(f"hf:{models['convnext']}", layers=[1, 2], pooling="mean")
    assert conv.dim == 8 + 16  # ConvNeXt stage widths


# ------------------------------------------------------------------------------------- dual encoders
@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_dual_encoder_image_and_text_features(models, family):
    folder = models[family]
    model = transformers.AutoModel.from_pretrained(folder).eval()
    img = build_teacher(f"hf:{folder}")
    assert img.modality == "image" and img.dim == model.config.projection_dim if family == "clip" else True
    with torch.inference_mode():
        vis = model.vision_model(pixel_values=_pixels(folder, IMAGES)).pooler_output
        ref = model.visual_projection(vis) if family == "clip" else vis
    np.testing.assert_allclose(img.encode(IMAGES), ref.numpy(), rtol=1e-4, atol=1e-5)
    txt = build_teacher(f"hf:{folder}?modality=text")
    assert txt.modality == "text" and txt.name != img.name
    feats = txt.encode(tiny.TEXTS)
    assert feats.shape == (4, img.dim)
    # padding invariance: a short text alone vs in a padded batch
    np.testing.assert_allclose(txt.encode(tiny.TEXTS[1:2])[0], feats[1], atol=1e-5)
    normed = build_teacher(f"hf:{folder}", modality="text", normalize=True)
    np.testing.assert_allclose(np.linalg.norm(normed.encode(tiny.TEXTS), axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ConfigError, match="encodes texts"):
        txt.encode(IMAGES)


def test_clip_text_features_by_hand(models):
    folder = models["clip"]
    model = transformers.CLIPModel.from_pretrained(folder).eval()
    ids = torch.tensor([[tiny.VOCAB[w] for w in ["[CLS]", "dog", "ran", "[SEP]"]]])
    with torch.inference_mode():
        hidden = model.text_model(input_ids=ids).last_hidden_state
        ref = model.text_projection(hidden[:, -1])  # the EOS ([SEP]) token, projected
    got = build_teacher(f"hf:{folder}", modality="text").encode(["dog ran"])
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------------------------------- decoder LLMs
@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_decoder_llm_pads_pools_and_is_padding_invariant(models, family):
    folder = models[family]
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    t = build_teacher(f"hf:{folder}")
    assert t.modality == "text" and t.dim == 16
    if family != "qwen2":  # Qwen's tokenizer has a pad token; GPT-2 / Llama ship without one: EOS pads
        assert tok.pad_token is None and t.preprocess_config()["pad_token"] == "<eos>"
    feats = t.encode(tiny.TEXTS)
    assert feats.shape == (4, 16)
    for i, text in enumerate(tiny.TEXTS):  # alone (no padding) vs in a batch padded to the longest
        np.testing.assert_allclose(t.encode([text])[0], feats[i], atol=1e-5)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    ids = tok(["dog ran"], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model(input_ids=ids, output_hidden_states=True)
    np.testing.assert_allclose(feats[1], out.last_hidden_state[0, -1].numpy(), rtol=1e-4, atol=1e-5)
    mean = build_teacher(f"hf:{folder}", pooling="mean")
    np.testing.assert_allclose(mean.encode(tiny.TEXTS)[1], out.last_hidden_state[0].mean(0).numpy(), rtol=1e-4,
                               atol=1e-5)
    layer = build_teacher(f"hf:{folder}?layers=1")
    np.testing.assert_allclose(layer.encode(tiny.TEXTS)[1], out.hidden_states[1][0, -1].numpy(), rtol=1e-4, atol=1e-5)
    assert len({t.name, mean.name, layer.name}) == 3
    np.testing.assert_array_equal(t.encode(tiny.TEXTS), feats)  # deterministic


def test_decoder_llm_left_padding_tokenizer_and_dtype(models):
    folder = models["llama"]
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    tok.save_pretrained(folder / "left")
    transformers.AutoModel.from_pretrained(folder).save_pretrained(folder / "left")
    left = build_teacher(f"hf:{folder / 'left'}")  # we pad on the right: positions never move
    feats = left.encode(tiny.TEXTS)
    np.testing.assert_allclose(left.encode(tiny.TEXTS[1:2])[0], feats[1], atol=1e-5)
    bf16 = build_teacher(f"hf:{folder}", dtype="bfloat16")
    assert bf16.model.dtype == torch.bfloat16 and "dtype=bfloat16" in bf16.name and "bfloat16" in bf16.version
    got = bf16.encode(tiny.TEXTS)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, build_teacher(f"hf:{folder}").encode(tiny.TEXTS), rtol=0.1, atol=0.1)
    mapped = build_teacher(f"hf:{folder}", device_map="cpu")
    np.testing.assert_allclose(mapped.encode(tiny.TEXTS), feats, atol=1e-5)
    with pytest.raises(ConfigError, match="unknown dtype"):
        build_teacher(f"hf:{folder}", dtype="int3")
    with pytest.raises(ConfigError, match="unknown pooling"):
        build_teacher(f"hf:{folder}", pooling="cls")


def test_encoder_layers_and_name_options(models):
    folder = models["bert"]
    t = build_teacher(f"hf:{folder}", layers=[0, -1], pooling="cls")
    assert t.dim == 32 and t.name == f"hf:{folder}?layers=0+-1&pooling=cls"
    model = transformers.AutoModel.from_pretrained(folder).eval()
    ids = torch.tensor([[tiny.VOCAB[w] for w in ["[CLS]", "dog", "ran", "[SEP]"]]])
    with torch.inference_mode():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    ref = np.concatenate([hs[0][0, 0].numpy(), hs[-1][0, 0].numpy()])
    np.testing.assert_allclose(t.encode(["dog ran"])[0], ref, rtol=1e-4, atol=1e-5)
    short = build_teacher(f"hf:{folder}?max_length=3&trust_remote_code=false")  # values from a name are typed
    assert short.max_length == 3 and short.name == f"hf:{folder}?max_length=3&trust_remote_code=false"
    np.testing.assert_allclose(short.encode(["dog ran far"])[0], short.encode(["dog"])[0], atol=1e-6)  # [CLS] dog [SEP]
    with pytest.raises(ConfigError, match="in its name and as an option"):
        build_teacher(f"hf:{folder}?pooling=cls", pooling="mean")
    with pytest.raises(ConfigError, match="bad teacher option"):
        build_teacher(f"hf:{folder}?pooling")
    with pytest.raises(ConfigError, match="layers must be integers"):
        build_teacher(f"hf:{folder}?layers=last")


def test_multi_layer_store_has_one_block_per_layer(models, tmp_path):
    from aft.data.split import DatasetSplit
    from aft.features import extract
    from aft.features.store import FeatureStore, open_features

    split = DatasetSplit(dataset="toy", split="train", inputs=list(tiny.TEXTS), labels=np.array([0, 1, 0, 1]), class_names=["a", "b"],
                         ids=[f"s{i}" for i in range(4)], modality="text")
    folder = models["gpt2"]
    multi = build_teacher(f"hf:{folder}", layers=[1, 2])
    last = build_teacher(f"hf:{folder}")
    paths = extract([multi, last], split, tmp_path, progress=False, dtype="float32")
    assert paths[0] != paths[1]  # another layer choice is another store
    store = FeatureStore.open(paths[0])
    assert store.column_ranges == {f"{multi.name}[layer=1]": (0, 16), f"{multi.name}[layer=2]": (16, 32)}
    feats = open_features(tmp_path, [multi, last], split)
    assert feats.column_ranges == {f"{multi.name}[layer=1]": (0, 16), f"{multi.name}[layer=2]": (16, 32),
                                   last.name: (32, 48)}
    got = feats.get(split.ids)
    np.testing.assert_allclose(got[:, 16:32], got[:, 32:48], atol=1e-5)  # GPT-2's last hidden state = layer 2

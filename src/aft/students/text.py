"""Text students: `text-cnn` (from scratch, MiniLM tokenizer hashed to a small vocabulary),
`wordllama-bag` (embedding bag initialized from WordLlama), and transformer fine-tuning
(`minilm`, ``st:<path>``, ``hf:<id>``) with mean-pooled features."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aft.errors import AssetError, ConfigError, DataError
from aft.students.base import STUDENTS, Student, asset_path


def _check_texts(raw_inputs: Any) -> list[str]:
    if isinstance(raw_inputs, str):
        return [raw_inputs]
    texts = list(raw_inputs)
    if texts and not isinstance(texts[0], str):
        raise DataError("this student takes texts (a list of str); got non-text inputs")
    return texts


def load_tokenizer_json(folder: Path, max_len: int) -> tuple[Any, int]:
    """A `tokenizers.Tokenizer` from ``folder/tokenizer.json`` padding/truncating to `max_len`."""
    from tokenizers import Tokenizer

    file = folder / "tokenizer.json" if folder.is_dir() else folder
    if not file.exists():
        raise AssetError(f"no tokenizer.json in {str(folder)!r}; pass a folder holding one")
    tok = Tokenizer.from_file(str(file))
    pad_id = tok.token_to_id("[PAD]")
    pad_id = 0 if pad_id is None else int(pad_id)
    tok.enable_truncation(max_length=int(max_len))
    tok.enable_padding(length=int(max_len), pad_id=pad_id)
    return tok, pad_id


class TextCNN(Student):
    """Kim-style CNN over token embeddings (kernel sizes 3/4/5, max-pooling), trained from scratch.

    Token ids come from the bundled MiniLM tokenizer and are hashed into `vocab_size` buckets
    so that the whole model stays under 2.2M parameters (1/50 of BERT-base).

    Args:
        num_classes: output classes.
        vocab_size: number of embedding rows (token id modulo this; 0 is padding).
        embed_dim: embedding width.
        channels: filters per kernel size.
        max_len: tokens kept per text.
        dropout: dropout before the head.
        tokenizer: folder with ``tokenizer.json`` (default: the ``minilm`` asset).
    """

    name = "text-cnn"
    modality = "text"

    def __init__(self, num_classes: int, vocab_size: int = 8192, embed_dim: int = 128, channels: int = 128,
                 max_len: int = 128, dropout: float = 0.1, tokenizer: str | None = None) -> None:
        super().__init__(num_classes, {"vocab_size": vocab_size, "embed_dim": embed_dim, "channels": channels,
                                       "max_len": max_len, "dropout": dropout, "tokenizer": tokenizer})
        self.vocab_size = int(vocab_size)
        self.max_len = int(max_len)
        self._tokenizer_dir = tokenizer
        self._tok: Any = None
        self.embed = nn.Embedding(self.vocab_size, int(embed_dim), padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(int(embed_dim), int(channels), k, padding=k // 2) for k in (3, 4, 5))
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(3 * int(channels), num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = (x != 0).unsqueeze(1)
        h = self.embed(x).transpose(1, 2)
        pooled = [conv(h).relu()[..., : x.shape[1]].masked_fill(~mask, 0.0).amax(dim=2) for conv in self.convs]
        feats = torch.cat(pooled, dim=1)
        return self.head(self.dropout(feats)), feats

    def preprocess(self, raw_inputs: Sequence[str]) -> torch.Tensor:
        if self._tok is None:
            self._tok, self._pad = load_tokenizer_json(asset_path("minilm", self._tokenizer_dir), self.max_len)
        enc = self._tok.encode_batch(_check_texts(raw_inputs))
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long).reshape(len(enc), self.max_len)
        hashed = ids % self.vocab_size
        # keep 0 for padding only: real tokens that hash to 0 go to bucket 1
        hashed = torch.where((hashed == 0) & (ids != self._pad), torch.ones_like(hashed), hashed)
        return torch.where(ids == self._pad, torch.zeros_like(hashed), hashed)

    def example_input(self) -> torch.Tensor:
        return torch.ones(2, 8, dtype=torch.long)


STUDENTS.add("text-cnn", TextCNN)


class WordLlamaBag(Student):
    """Mean of token embeddings initialized from WordLlama (pre-trained init), a hidden layer, a head.

    Args:
        num_classes: output classes.
        dim: WordLlama embedding width (matryoshka truncation: 64, 128, 256...).
        hidden: width of the hidden layer whose output is phi (0: phi is the mean embedding).
        max_len: tokens kept per text.
        path: WordLlama cache folder (default: the ``wordllama`` asset).
    """

    name = "wordllama-bag"
    modality = "text"

    def __init__(self, num_classes: int, dim: int = 256, hidden: int = 256, max_len: int = 256,
                 path: str | None = None) -> None:
        super().__init__(num_classes, {"dim": dim, "hidden": hidden, "max_len": max_len, "path": path})
        try:
            from wordllama import WordLlama
        except ImportError:
            raise ConfigError("student wordllama-bag needs the `wordllama` package; pip install aft[text]") from None
        folder = asset_path("wordllama", path)
        wl = WordLlama.load(dim=256, cache_dir=folder, disable_download=True)
        weights = torch.from_numpy(np.asarray(wl.embedding, dtype=np.float32)[:, : int(dim)].copy())
        self._tok = wl.tokenizer
        self._tok.enable_truncation(max_length=int(max_len))
        self.max_len = int(max_len)
        # row 0 is padding; token t lives at row t + 1
        self.embed = nn.Embedding(weights.shape[0] + 1, weights.shape[1], padding_idx=0)
        with torch.no_grad():
            self.embed.weight[1:] = weights
            self.embed.weight[0] = 0.0
        self.hidden = nn.Sequential(nn.Linear(weights.shape[1], int(hidden)), nn.GELU()) if hidden else nn.Identity()
        self.head = nn.Linear(int(hidden) or weights.shape[1], num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = (x != 0).unsqueeze(-1).float()
        pooled = (self.embed(x) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        feats = self.hidden(pooled)
        return self.head(feats), feats

    def preprocess(self, raw_inputs: Sequence[str]) -> torch.Tensor:
        enc = self._tok.encode_batch(_check_texts(raw_inputs), add_special_tokens=False)
        out = torch.zeros(len(enc), self.max_len, dtype=torch.long)
        for i, e in enumerate(enc):
            ids = [t for t, m in zip(e.ids, e.attention_mask, strict=False) if m][: self.max_len]
            if ids:
                out[i, : len(ids)] = torch.tensor(ids) + 1
        return out

    def example_input(self) -> torch.Tensor:
        return torch.ones(2, 8, dtype=torch.long)


STUDENTS.add("wordllama-bag", WordLlamaBag)


class TransformerStudent(Student):
    """Fine-tune a pre-trained text transformer; phi = attention-masked mean of the last hidden states.

    Registered as ``st`` (sentence-transformers folder, ``st:<path>``), ``minilm`` (the bundled
    all-MiniLM-L6-v2 asset) and ``hf`` (any ``transformers`` AutoModel id or folder, ``hf:<id>``).

    Args:
        num_classes: output classes.
        path / model_id: model folder or hub id.
        max_len: tokens kept per text.
    """

    name = "st"
    modality = "text"

    def __init__(self, num_classes: int, model: nn.Module, tokenizer: Any, max_len: int,
                 options: dict[str, Any], name: str) -> None:
        super().__init__(num_classes, options)
        self.name = name  # type: ignore[misc]
        self.encoder = model
        self.tokenizer = tokenizer
        self.max_len = int(max_len)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = 0 if pad is None else int(pad)
        self.head = nn.Linear(int(model.config.hidden_size), num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = x[:, 0], x[:, 1]
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        feats = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(feats), feats

    def preprocess(self, raw_inputs: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(_check_texts(raw_inputs), padding="max_length", truncation=True,
                             max_length=self.max_len, return_tensors="pt")
        # (N, 2, L): input ids and attention mask stacked so the batch stays one tensor
        return torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1).long()

    def example_input(self) -> torch.Tensor:
        return torch.ones(2, 2, 4, dtype=torch.long)


REMOTE_CODE_HINT = "it needs its own Python code: pass --trust-remote-code only if you trust that folder"


def _load_error(kind: str, where: str, exc: Exception) -> ConfigError:
    """One-line `ConfigError` for a model that failed to load (a refusal to run its code named as such)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "trust_remote_code" in str(exc) or "custom code" in str(exc) or "not part of Sentence Transformers" in str(exc):
        return ConfigError(f"cannot load {kind} model {where!r}: {REMOTE_CODE_HINT}")
    return ConfigError(f"cannot load {kind} model {where!r}: {text}")


def _st_student(num_classes: int, path: str | None = None, max_len: int = 128,
                trust_remote_code: bool = False) -> TransformerStudent:
    """``st:<path>``; `trust_remote_code` (never saved with the run) lets the folder import its own modules."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    folder = asset_path("minilm", path) if path is None else Path(path).expanduser()
    try:
        st = SentenceTransformer(str(folder), device="cpu", trust_remote_code=trust_remote_code is True)
    except (OSError, ValueError) as exc:
        raise _load_error("sentence-transformers", str(folder), exc) from None
    return TransformerStudent(num_classes, st[0].auto_model, st.tokenizer, max_len,
                              {"path": path, "max_len": max_len}, "st")


def _minilm_student(num_classes: int, max_len: int = 128, path: str | None = None) -> TransformerStudent:
    student = _st_student(num_classes, path=str(asset_path("minilm", path)), max_len=max_len)
    student.name = "minilm"  # type: ignore[misc]
    student.options = {"max_len": max_len, "path": path}
    return student


def _hf_student(num_classes: int, model_id: str, max_len: int = 128, trust_remote_code: bool = False,
                pooling: str | None = None) -> Student:
    """``hf:<id>``; `trust_remote_code` (never saved with the run) lets the model run its own Python code.

    Text encoders give a `TransformerStudent`; image encoders (a config with image channels, e.g.
    ViT-Tiny, DeiT-Tiny, ConvNeXt) an `aft.students.vision.HFVisionStudent` with its own image processor.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from aft.teachers.hf import hf_kind

    kw = {"trust_remote_code": trust_remote_code is True}
    try:
        config = AutoConfig.from_pretrained(model_id, **kw)
        model = AutoModel.from_pretrained(model_id, **kw)
        if hf_kind(config) == "vision":
            from transformers import AutoImageProcessor

            from aft.students.vision import HFVisionStudent

            processor = AutoImageProcessor.from_pretrained(model_id, **kw)
            return HFVisionStudent(num_classes, model_id, pooling=pooling, processor=processor, model=model)
        tok = AutoTokenizer.from_pretrained(model_id, **kw)
    except (OSError, ValueError) as exc:
        raise _load_error("hf", model_id, exc) from None
    if pooling not in (None, "mean"):
        raise ConfigError(f"text student hf:{model_id} pools by the masked mean; drop pooling={pooling!r}")
    return TransformerStudent(num_classes, model, tok, max_len, {"model_id": model_id, "max_len": max_len}, "hf")


STUDENTS.add("st", _st_student)
STUDENTS.add("minilm", _minilm_student)
STUDENTS.add("hf", _hf_student)



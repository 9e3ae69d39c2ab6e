"""``hf:<id-or-folder>`` teachers through transformers: text encoders, vision encoders, CLIP/SigLIP, decoder LLMs.

`build_teacher("hf:...")` reads the model's config and picks the adapter from `HF_KINDS` (override
with ``kind=``):

- ``encoder`` (BERT, MiniLM, RoBERTa...): `aft.teachers.text.HFTeacher`, mean or CLS pooling.
- ``vision`` (ViT, DINOv2, CLIP / SigLIP vision towers, ConvNeXt...): `HFVisionTeacher`, the
  model's own image processor (``AutoImageProcessor``) and ``cls``, ``mean`` (patch tokens),
  ``pooler`` or ``cls+mean`` pooling.
- ``dual`` (``CLIPModel``, ``SiglipModel``): `HFDualEncoderTeacher`, image features for
  ``modality="image"``, text features for ``modality="text"``.
- ``decoder`` (GPT-2, Llama, Qwen, Mistral...): `HFDecoderTeacher`, last-token or mean pooling.

All take ``layers=`` (a hidden-state index, or several: each layer's pooled features become one
column block, recorded in the manifest, so rho and the reports see the layers as separate
teachers), ``device=``; LLMs also ``dtype=`` (``bfloat16``/``float16``) and ``device_map=``.
Options can be written into the name (``hf:gpt2?pooling=mean&layers=6``); the name and the
recorded preprocessing change with them, so features of another layer/pooling never mix.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aft.errors import ConfigError
from aft.registry import Registry
from aft.teachers.base import (
    TEACHER_PREFIXES,
    Teacher,
    TeacherInputs,
    as_bool,
    as_layers,
    files_version,
    layer_blocks,
    options_name,
)


def transformers_version() -> str:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def weights_version(path_or_id: str) -> str:
    """Content hash of a local model folder; ``id:<name>`` for a hub id (its revision is the hub's)."""
    p = Path(path_or_id)
    return files_version(p) if p.exists() else f"id:{path_or_id}"


def load_kwargs(path_or_id: str, trust_remote_code: Any = False) -> dict[str, Any]:
    return {"trust_remote_code": as_bool(trust_remote_code, "trust_remote_code"),
            "local_files_only": Path(path_or_id).is_dir()}


TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_kwargs(dtype: str | None) -> dict[str, Any]:
    """``from_pretrained`` keyword for the weights' dtype (``dtype=`` from transformers 4.56, ``torch_dtype=`` before)."""
    if dtype is None:
        return {}
    if dtype not in TORCH_DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {', '.join(TORCH_DTYPES)}")
    major_minor = tuple(int(x) for x in transformers_version().split(".")[:2] if x.isdigit())
    key = "dtype" if major_minor >= (4, 56) else "torch_dtype"
    return {key: TORCH_DTYPES[dtype]}


def pick_layers(hidden_states: Sequence[torch.Tensor], layers: Sequence[int], name: str) -> list[torch.Tensor]:
    """``hidden_states[i]`` for each requested layer (0 = embeddings, -1 = last), range-checked."""
    n = len(hidden_states)
    bad = [i for i in layers if not -n <= i < n]
    if bad:
        raise ConfigError(f"teacher {name!r} has hidden states 0..{n - 1} (or -{n}..-1); layer {bad[0]} is out of range")
    return [hidden_states[i] for i in layers]


def images_to_rgb_list(images: np.ndarray) -> list[np.ndarray]:
    """uint8 ``(n, H, W)`` / ``(n, H, W, 3)`` -> a list of ``(H, W, 3)`` uint8 arrays (gray repeated)."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ConfigError(f"images must be uint8 (got {arr.dtype}); convert them to 0..255 uint8 first")
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    elif not (arr.ndim == 4 and arr.shape[-1] in (1, 3)):
        raise ConfigError(f"images must have shape (n, H, W) or (n, H, W, 3), got {tuple(arr.shape)}")
    elif arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return [np.ascontiguousarray(a) for a in arr]


# ------------------------------------------------------------------------------------------ vision
def prefix_tokens(config: Any) -> int:
    """How many leading tokens are not patches: CLS (+ registers for DINOv2 with registers); 0 for SigLIP."""
    if getattr(config, "model_type", "").startswith("siglip"):
        return 0
    return 1 + int(getattr(config, "num_register_tokens", 0) or 0)


def pool_tokens(hidden: torch.Tensor, pooling: str, n_prefix: int) -> torch.Tensor:
    """Pool one hidden state: ``(n, tokens, d)`` (ViT-like) or ``(n, C, H, W)`` (conv nets) -> ``(n, d')``."""
    if hidden.ndim == 4:  # a conv feature map: only the spatial mean exists
        if pooling != "mean":
            raise ConfigError(f"pooling {pooling!r} needs tokens; a convolutional model supports pooling='mean' (or 'pooler')")
        return hidden.mean((2, 3))
    if pooling in ("cls", "cls+mean") and n_prefix == 0:
        raise ConfigError("this model has no CLS token; use pooling='mean' or 'pooler'")
    cls = hidden[:, 0]
    mean = hidden[:, n_prefix:].mean(1)
    return {"cls": cls, "mean": mean, "cls+mean": torch.cat([cls, mean], dim=1)}[pooling]


VISION_POOLINGS = ("cls", "mean", "pooler", "cls+mean")
#: a model type's usual pooled image feature (others: ``cls`` with a CLS token, else ``mean``)
DEFAULT_VISION_POOLING = {"clip_vision_model": "pooler", "siglip_vision_model": "pooler", "convnext": "pooler",
                          "convnextv2": "pooler", "dinov2": "cls", "vit": "cls"}


class _HFVersioned:
    """`version` of a transformers teacher: library version + weights digest (+ dtype), computed once."""

    path: str
    version_suffix = ""
    _version: str | None = None

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = (f"transformers={transformers_version()};weights={weights_version(self.path)}"
                             + self.version_suffix)
        return self._version


class HFVisionTeacher(_HFVersioned, Teacher):
    """A transformers image encoder with its own image processor.

    Args:
        path_or_id: a folder saved with ``save_pretrained`` (model + image processor) or a hub id.
        pooling: ``"cls"``, ``"mean"`` (patch tokens; the spatial mean for conv nets), ``"pooler"``
            (the model's ``pooler_output``: CLIP's post-layernorm CLS, SigLIP's attention pool,
            ConvNeXt's normalized mean) or ``"cls+mean"`` (DINOv2's linear evaluation). Default by
            model type (`DEFAULT_VISION_POOLING`).
        layers: hidden-state index or indices (0 = patch embeddings); pooled per layer, one column
            block each. Default: the model's final output.
        trust_remote_code: allow the model's own Python code (off unless you trust it).
        device: torch device.
        name: store key (default: the canonical ``hf:`` name with the non-default options).
    """

    modality = "image"

    def __init__(self, path_or_id: str, pooling: str | None = None, layers: Any = None, trust_remote_code: Any = False,
                 device: str = "cpu", name: str | None = None, config: Any = None) -> None:
        from transformers import AutoImageProcessor, AutoModel

        kw = load_kwargs(path_or_id, trust_remote_code)
        self.path = str(path_or_id)
        self.device = device
        self.processor = AutoImageProcessor.from_pretrained(self.path, **kw)
        self.model = AutoModel.from_pretrained(self.path, **kw).to(device).eval()
        self.config = self.model.config
        self.n_prefix = prefix_tokens(self.config)
        default = DEFAULT_VISION_POOLING.get(self.config.model_type, "cls" if self.n_prefix else "mean")
        self.pooling = pooling or default
        if self.pooling not in VISION_POOLINGS:
            raise ConfigError(f"unknown pooling {self.pooling!r}; use one of {', '.join(VISION_POOLINGS)}")
        self.layers = as_layers(layers)
        if self.layers is not None and self.pooling == "pooler":
            raise ConfigError("pooling='pooler' exists for the final output only; with layers= use cls, mean or cls+mean")
        self.name = name or options_name("hf", self.path, {"pooling": self.pooling, "layers": self.layers},
                                         {"pooling": default, "layers": None})
        self._dims = self._probe_dims()
        self.dim = sum(self._dims)
        self._version = None

    def _probe_dims(self) -> list[int]:
        probe = np.zeros((1, 32, 32, 3), dtype=np.uint8)
        return [int(b.shape[1]) for b in self._blocks(probe)]

    def preprocess_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"processor": type(self.processor).__name__, "pooling": self.pooling,
                               "layers": list(self.layers) if self.layers else None}
        for key in ("size", "crop_size", "image_mean", "image_std", "resample", "do_center_crop", "rescale_factor"):
            value = getattr(self.processor, key, None)
            if value is not None:
                cfg[key] = value if isinstance(value, (int, float, bool, str, list, dict)) else repr(value)
        if self.layers is not None and len(self.layers) > 1:
            cfg["blocks"] = layer_blocks(self.layers, self._dims)
        return cfg

    def _blocks(self, images: np.ndarray) -> list[torch.Tensor]:
        px = self.processor(images=images_to_rgb_list(images), return_tensors="pt")["pixel_values"]
        out = self.model(pixel_values=px.to(self.device), output_hidden_states=self.layers is not None)
        if self.layers is None:
            if self.pooling == "pooler":
                pooled = getattr(out, "pooler_output", None)
                if pooled is None:
                    raise ConfigError(f"teacher {self.path!r} has no pooler output; use pooling='cls' or 'mean'")
                return [pooled.flatten(1)]
            return [pool_tokens(out.last_hidden_state, self.pooling, self.n_prefix)]
        hidden = pick_layers(out.hidden_states, self.layers, self.name)
        return [pool_tokens(h, self.pooling, self.n_prefix) for h in hidden]

    @torch.inference_mode()
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        self.check_inputs(inputs)
        return torch.cat(self._blocks(np.asarray(inputs)), dim=1).float().cpu().numpy()


# ------------------------------------------------------------------------------------ dual encoders
class HFDualEncoderTeacher(_HFVersioned, Teacher):
    """CLIP / SigLIP (``CLIPModel``, ``SiglipModel``...): projected image or text embeddings.

    Args:
        path_or_id: folder (model + processor files) or hub id.
        modality: ``"image"`` (``get_image_features`` after the model's image processor) or
            ``"text"`` (``get_text_features`` after its tokenizer; SigLIP pads to its fixed length
            as it was trained).
        normalize: L2-normalize the embeddings (as for zero-shot similarity).
        max_length: text truncation in tokens (default: the text tower's position count).
        device, name, trust_remote_code: as for `HFVisionTeacher`.
    """

    def __init__(self, path_or_id: str, modality: str = "image", normalize: Any = False, max_length: int | None = None,
                 trust_remote_code: Any = False, device: str = "cpu", name: str | None = None,
                 config: Any = None) -> None:
        from transformers import AutoModel

        if modality not in ("image", "text"):
            raise ConfigError(f"modality must be 'image' or 'text', got {modality!r}")
        kw = load_kwargs(path_or_id, trust_remote_code)
        self.path = str(path_or_id)
        self.modality = modality  # type: ignore[misc]
        self.normalize = as_bool(normalize, "normalize")
        self.device = device
        self.model = AutoModel.from_pretrained(self.path, **kw).to(device).eval()
        self.siglip = self.model.config.model_type.startswith("siglip")
        positions = int(getattr(self.model.config.text_config, "max_position_embeddings", 77))
        self.max_length = int(max_length or positions)
        if modality == "image":
            from transformers import AutoImageProcessor

            self.processor = AutoImageProcessor.from_pretrained(self.path, **kw)
        else:
            from transformers import AutoTokenizer

            self.processor = AutoTokenizer.from_pretrained(self.path, **kw)
        self.name = name or options_name("hf", self.path, {"modality": modality, "normalize": self.normalize},
                                         {"modality": "image", "normalize": False})
        self.dim = int(self._embed(["a"] if modality == "text" else np.zeros((1, 32, 32, 3), np.uint8)).shape[1])
        self._version = None

    def preprocess_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"modality": self.modality, "normalize": self.normalize,
                               "processor": type(self.processor).__name__}
        if self.modality == "text":
            cfg.update(max_length=self.max_length, padding="max_length" if self.siglip else "longest")
        else:
            for key in ("size", "crop_size", "image_mean", "image_std"):
                value = getattr(self.processor, key, None)
                if value is not None:
                    cfg[key] = value if isinstance(value, (int, float, list, dict)) else repr(value)
        return cfg

    def _embed(self, inputs: TeacherInputs) -> torch.Tensor:
        if self.modality == "image":
            px = self.processor(images=images_to_rgb_list(np.asarray(inputs)), return_tensors="pt")["pixel_values"]
            out = self.model.get_image_features(pixel_values=px.to(self.device))
        else:
            enc = self.processor(list(inputs), padding="max_length" if self.siglip else True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            out = self.model.get_text_features(**enc)
        feats = out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 5 returns an output object
        return torch.nn.functional.normalize(feats, dim=-1) if self.normalize else feats

    @torch.inference_mode()
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        self.check_inputs(inputs)
        return self._embed(inputs).float().cpu().numpy()


# -------------------------------------------------------------------------------------- decoder LLMs
DECODER_POOLINGS = ("last", "mean")


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last real token (padding on either side)."""
    length = mask.shape[1]
    last = length - 1 - mask.flip(1).long().argmax(1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(hidden.device).unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class HFDecoderTeacher(_HFVersioned, Teacher):
    """A decoder LLM (GPT-2, Llama, Qwen, Mistral...) through ``AutoModel``: pooled hidden states.

    Texts are padded on the right (positions of real tokens never move, so a text gives the same
    features alone or in a padded batch); a tokenizer without a pad token pads with its EOS token
    (the attention mask excludes it).

    Args:
        path_or_id: a folder (model + tokenizer) or hub id.
        pooling: ``"last"`` (the last real token: the only one that saw the whole text) or ``"mean"``.
        layers: hidden-state index or indices (0 = token embeddings, -1 = last, the default);
            middle layers often transfer better than the last.
        max_length: truncation in tokens.
        dtype: weights' dtype, ``"bfloat16"`` / ``"float16"`` / ``"float32"`` (features are float32).
        device_map: passed to ``from_pretrained`` (``"auto"`` spreads a large model over the GPUs;
            needs accelerate); `device` is then ignored.
        device, name, trust_remote_code: as for `HFVisionTeacher`.
    """

    modality = "text"

    def __init__(self, path_or_id: str, pooling: str = "last", layers: Any = None, max_length: int = 512,
                 dtype: str | None = None, device_map: str | None = None, trust_remote_code: Any = False,
                 device: str = "cpu", name: str | None = None, config: Any = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        if pooling not in DECODER_POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; use one of {', '.join(DECODER_POOLINGS)}")
        kw = load_kwargs(path_or_id, trust_remote_code)
        self.path = str(path_or_id)
        self.pooling = pooling
        self.layers = as_layers(layers)
        self.max_length = int(max_length)
        self.dtype = dtype
        self.version_suffix = f";dtype={dtype}"
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, **kw)
        if self.tokenizer.pad_token is None:
            fill = self.tokenizer.eos_token or self.tokenizer.unk_token
            if fill is None:
                raise ConfigError(f"tokenizer of {self.path!r} has no pad, eos or unk token to pad with; add a pad token")
            self.tokenizer.pad_token = fill
        self.tokenizer.padding_side = "right"
        extra: dict[str, Any] = dict(dtype_kwargs(dtype))
        if device_map is not None:
            extra["device_map"] = device_map
        model = AutoModel.from_pretrained(self.path, **kw, **extra)
        self.model = (model if device_map is not None else model.to(device)).eval()
        self.device = str(next(self.model.parameters()).device) if device_map is not None else device
        self.name = name or options_name(
            "hf", self.path, {"pooling": pooling, "layers": self.layers, "dtype": dtype},
            {"pooling": "last", "layers": None, "dtype": None})
        self._dims = [int(b.shape[1]) for b in self._blocks(["a"])]
        self.dim = sum(self._dims)
        self._version = None

    def preprocess_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"tokenizer": type(self.tokenizer).__name__, "max_length": self.max_length,
                               "pooling": self.pooling, "layers": list(self.layers) if self.layers else None,
                               "padding_side": "right", "pad_token": str(self.tokenizer.pad_token)}
        if self.layers is not None and len(self.layers) > 1:
            cfg["blocks"] = layer_blocks(self.layers, self._dims)
        return cfg

    def _blocks(self, texts: Sequence[str]) -> list[torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        first = self.model.get_input_embeddings().weight.device
        ids, mask = enc["input_ids"].to(first), enc["attention_mask"].to(first)
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=self.layers is not None)
        hidden = [out.last_hidden_state] if self.layers is None else pick_layers(out.hidden_states, self.layers, self.name)
        pool = last_token if self.pooling == "last" else masked_mean
        return [pool(h, mask) for h in hidden]

    @torch.inference_mode()
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        self.check_inputs(inputs)
        return torch.cat(self._blocks(list(inputs)), dim=1).float().cpu().numpy()


# --------------------------------------------------------------------------------------- dispatch
def hf_kind(config: Any) -> str:
    """``"dual"``, ``"vision"``, ``"decoder"`` or ``"encoder"`` from a transformers config."""
    if hasattr(config, "text_config") and hasattr(config, "vision_config"):
        return "dual"
    if hasattr(config, "num_channels") and not hasattr(config, "vocab_size"):
        return "vision"
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    mt = getattr(config, "model_type", "")
    if mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "decoder"
    return "encoder"


def _encoder(path_or_id: str, **options: Any) -> Teacher:
    from aft.teachers.text import HFTeacher

    options.pop("config", None)
    return HFTeacher(path_or_id, **options)


#: ``kind`` -> adapter for ``hf:`` teachers
HF_KINDS: Registry[Callable[..., Teacher]] = Registry("hf teacher kind")
HF_KINDS.add("encoder", _encoder)
HF_KINDS.add("vision", HFVisionTeacher)
HF_KINDS.add("dual", HFDualEncoderTeacher)
HF_KINDS.add("decoder", HFDecoderTeacher)


def hf_teacher(path_or_id: str, kind: str | None = None, **options: Any) -> Teacher:
    """Build the ``hf:`` teacher of the right kind for the model at `path_or_id` (see the module doc)."""
    from transformers import AutoConfig

    kw = load_kwargs(str(path_or_id), options.get("trust_remote_code", False))
    config = AutoConfig.from_pretrained(str(path_or_id), **kw)
    factory = HF_KINDS.get(kind or hf_kind(config))
    try:
        return factory(str(path_or_id), config=config, **options)
    except TypeError as exc:
        raise ConfigError(f"teacher hf:{path_or_id}: bad options {sorted(options)} ({exc})") from None


TEACHER_PREFIXES.add("hf", hf_teacher)

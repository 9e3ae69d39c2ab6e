"""The `Teacher` interface, its registry, `build_teacher`, and wrappers for user callables/modules.

A teacher turns a batch of raw inputs (a list of texts, or a uint8 image array ``(n, H, W)`` /
``(n, H, W, 3)``) into a float32 feature matrix ``(n, dim)``. Its `name`, `version` and
`preprocess_config()` go into every feature store's manifest, so features computed with another
model, weights or preprocessing are never silently mixed.

Built-in names (`TEACHERS`): ``minilm``, ``mpnet``, ``wordllama``, ``efficientnet-lite0``,
``efficientnet-lite1``, ``efficientnet-lite2``. Prefixes (`TEACHER_PREFIXES`): ``st:<path-or-id>``
(sentence-transformers), ``hf:<path-or-id>`` (transformers AutoModel), ``timm:<name>``.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from aft.errors import AftError, AssetError, ConfigError, UnknownNameError
from aft.registry import Registry

TeacherModality = Literal["image", "text"]
TeacherInputs = np.ndarray | Sequence[str]


class Teacher(ABC):
    """A frozen feature extractor.

    Attributes:
        name: the id the teacher was built from (``"minilm"``, ``"st:/models/x"``...); stores
            are keyed by it.
        dim: feature dimension.
        modality: ``"image"`` or ``"text"``.
        device: torch device string the model runs on (``"cpu"``, ``"cuda"``...).
    """

    name: str
    dim: int
    modality: TeacherModality
    device: str = "cpu"

    @property
    @abstractmethod
    def version(self) -> str:
        """A string that changes when the weights or the library computing the features change."""

    @abstractmethod
    def preprocess_config(self) -> dict[str, Any]:
        """JSON-serializable description of the input preprocessing (recorded in the manifest)."""

    @abstractmethod
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        """Features of one batch: float32 ``(len(inputs), dim)``. Adapters run it under ``torch.inference_mode()``."""

    @property
    def slug(self) -> str:
        """A file-system-safe directory name for this teacher (see `teacher_slug`)."""
        return teacher_slug(self.name)

    def check_inputs(self, inputs: TeacherInputs) -> None:
        """Raise `ConfigError` if `inputs` do not match this teacher's modality."""
        is_images = isinstance(inputs, np.ndarray)
        if self.modality == "image" and not is_images:
            raise ConfigError(f"teacher {self.name!r} encodes images but got texts; pick an image teacher")
        if self.modality == "text" and is_images:
            raise ConfigError(f"teacher {self.name!r} encodes texts but got images; pick a text teacher")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, modality={self.modality!r})"


def teacher_slug(name: str) -> str:
    """Directory-safe form of a teacher name; names that needed changes get a short hash suffix.

    >>> teacher_slug("minilm")
    'minilm'
    >>> teacher_slug("st:/a/b").startswith("st-a-b-")
    True
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:60] or "teacher"
    if slug != name:
        slug = f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return slug


def files_version(folder: Path, large: int = 16 << 20) -> str:
    """A content hash of a model folder or file that changes when any byte of any file changes.

    Small files are read in full; files over `large` bytes enter by their full sha256, computed
    once and remembered by (size, mtime, ctime, inode) in the asset cache
    (`aft.assets.hashcache`), so later calls only ``stat`` them.
    """
    from aft.assets.hashcache import HashCache, sidecar_for

    folder = Path(folder)
    paths = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [folder]
    h = hashlib.sha256()
    caches: dict[Path, HashCache] = {}
    try:
        for p in paths:
            rel = p.relative_to(folder).as_posix() if folder.is_dir() else p.name
            if rel.startswith(".") or "/." in rel or p.suffix in {".md", ".lock"}:
                continue
            size = p.stat().st_size
            h.update(f"{rel}\0{size}\0".encode())
            if size <= large:
                with open(p, "rb") as f:
                    h.update(f.read())
            else:
                sidecar = sidecar_for(p)
                cache = caches.setdefault(sidecar, HashCache(sidecar))
                h.update(b"sha256:" + cache.sha256(p).encode())
    finally:
        for cache in caches.values():
            cache.save()
    return h.hexdigest()[:16]


def images_to_tensor(images: np.ndarray, channels: int = 3):  # -> torch.Tensor
    """uint8 ``(n, H, W)`` or ``(n, H, W, 3)`` -> float32 tensor ``(n, C, H, W)`` in [0, 1].

    Gray images are repeated to 3 channels when ``channels == 3``; RGB stays RGB.
    """
    import torch

    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ConfigError(f"images must be uint8 (got {arr.dtype}); convert them to 0..255 uint8 first")
    x = torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)
    if x.ndim == 3:
        x = x.unsqueeze(1)
        if channels == 3:
            x = x.expand(-1, 3, -1, -1)
    elif x.ndim == 4 and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
        if channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
    else:
        raise ConfigError(f"images must have shape (n, H, W) or (n, H, W, 3), got {tuple(arr.shape)}")
    return x.contiguous()


class CallableTeacher(Teacher):
    """Wrap any function ``fn(inputs) -> array-like (n, dim)`` as a teacher.

    Args:
        fn: called with one batch (list of texts or uint8 image array); may return numpy or torch.
        dim: feature dimension.
        modality: ``"image"`` or ``"text"``.
        name: store key; give distinct functions distinct names.
        version: bump it when `fn` changes (it is part of the store fingerprint).
        preprocess: free-form description recorded in the manifest.

    Example:
        >>> t = CallableTeacher(lambda xs: [[len(s)] for s in xs], dim=1, modality="text", name="len")
        >>> t.encode(["ab", "c"]).tolist()
        [[2.0], [1.0]]
    """

    def __init__(
        self,
        fn: Callable[[TeacherInputs], Any],
        dim: int,
        modality: TeacherModality,
        name: str = "callable",
        version: str = "1",
        preprocess: dict[str, Any] | None = None,
        device: str = "cpu",
    ) -> None:
        self.fn = fn
        self.dim = int(dim)
        self.modality = modality
        self.name = name
        self._version = version
        self._preprocess = dict(preprocess or {})
        self.device = device

    @property
    def version(self) -> str:
        return self._version

    def preprocess_config(self) -> dict[str, Any]:
        return dict(self._preprocess)

    @torch.inference_mode()
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        out = self.fn(inputs)
        if hasattr(out, "detach"):
            out = out.detach().float().cpu().numpy()
        arr = np.asarray(out, dtype=np.float32)
        if arr.shape != (len(inputs), self.dim):
            raise ConfigError(
                f"teacher {self.name!r} returned shape {arr.shape}, expected ({len(inputs)}, {self.dim}); "
                "fix its dim or its output"
            )
        return arr


class ModuleTeacher(Teacher):
    """Wrap a `torch.nn.Module` as a teacher.

    Images are converted by `images_to_tensor` (float in [0, 1], ``(n, C, H, W)``, `channels`
    channels) unless `preprocess` is given; texts need a `preprocess` that returns the module's
    input (a tensor or a dict of tensors passed as keyword arguments). The output must be
    ``(n, dim)`` or ``(n, dim, ...)`` (extra axes are averaged, e.g. a conv feature map).

    Args:
        module: the network (put in eval mode and moved to `device`).
        dim: feature dimension.
        modality: ``"image"`` or ``"text"``.
        name: store key.
        version: default: a hash of the module's parameters and buffers.
        preprocess: ``inputs -> tensor | dict``; default for images: `images_to_tensor`.
        channels: channels produced for gray images by the default image preprocessing (1 or 3).
        device: torch device.
    """

    def __init__(
        self,
        module: Any,
        dim: int,
        modality: TeacherModality = "image",
        name: str = "module",
        version: str | None = None,
        preprocess: Callable[[TeacherInputs], Any] | None = None,
        channels: int = 3,
        device: str = "cpu",
    ) -> None:
        if modality == "text" and preprocess is None:
            raise ConfigError("ModuleTeacher on texts needs preprocess= (a tokenizer returning tensors)")
        self.module = module.to(device).eval()
        self.dim = int(dim)
        self.modality = modality
        self.name = name
        self.device = device
        self.channels = channels
        self._preprocess = preprocess
        self._version = version

    @property
    def version(self) -> str:
        if self._version is None:
            h = hashlib.sha256(type(self.module).__qualname__.encode())
            for key, value in self.module.state_dict().items():
                h.update(key.encode())
                h.update(value.detach().cpu().contiguous().numpy().tobytes())
            self._version = "params-" + h.hexdigest()[:16]
        return self._version

    def preprocess_config(self) -> dict[str, Any]:
        if self._preprocess is not None:
            return {"preprocess": getattr(self._preprocess, "__qualname__", repr(self._preprocess))}
        return {"images": "uint8 -> float [0, 1]", "channels": self.channels}

    @torch.inference_mode()
    def encode(self, inputs: TeacherInputs) -> np.ndarray:
        import torch

        self.check_inputs(inputs)
        x = self._preprocess(inputs) if self._preprocess is not None else images_to_tensor(inputs, self.channels)  # type: ignore[arg-type]
        if isinstance(x, dict):
            out = self.module(**{k: v.to(self.device) for k, v in x.items()})
        else:
            out = self.module(torch.as_tensor(x).to(self.device))
        if out.ndim > 2:
            out = out.flatten(2).mean(2)
        arr = out.detach().float().cpu().numpy()
        if arr.shape != (len(inputs), self.dim):
            raise ConfigError(
                f"teacher {self.name!r} returned shape {arr.shape}, expected ({len(inputs)}, {self.dim})"
            )
        return arr


TeacherFactory = Callable[..., Teacher]

TEACHERS: Registry[TeacherFactory] = Registry("teacher")
"""Named teachers: ``build_teacher(name, **options)`` calls ``TEACHERS.get(name)(**options)``."""

TEACHER_PREFIXES: Registry[TeacherFactory] = Registry("teacher prefix")
"""``prefix:`` teachers: ``build_teacher("st:/path")`` calls ``TEACHER_PREFIXES.get("st")("/path")``."""


def build_teacher(name: str, **options: Any) -> Teacher:
    """Build a teacher by registry name (``"minilm"``) or ``prefix:target`` (``"hf:/models/bert"``).

    Options are passed to the teacher's constructor (``device="cuda"``, ``resolution=224``,
    ``pooling="cls"``...). Options that are ``None`` are dropped, so CLI defaults pass through.

    Raises:
        UnknownNameError: unknown name or prefix (the message lists the valid ones).
    """
    _ensure_builtins()
    opts = {k: v for k, v in options.items() if v is not None}
    if name in TEACHERS:
        return TEACHERS.get(name)(**opts)
    prefix, sep, target = name.partition(":")
    if sep and len(prefix) > 1:  # a one-letter prefix is a Windows drive, not a teacher prefix
        if prefix not in TEACHER_PREFIXES:
            valid = ", ".join(f"{p}:" for p in TEACHER_PREFIXES.names())
            raise UnknownNameError(f"unknown teacher prefix {prefix + ':'!r}; valid prefixes: {valid}")
        target, in_name = split_name_options(target)
        clash = sorted(set(in_name) & set(opts))
        if clash:
            raise ConfigError(f"teacher {name!r} sets {clash[0]!r} in its name and as an option; give it once")
        opts.update(in_name)
        if in_name and "name" not in opts:  # the store key is the name as written
            opts["name"] = name
        if not target:
            raise ConfigError(f"teacher {name!r} names no model; write {prefix}:<path-or-id>")
        factory = TEACHER_PREFIXES.get(prefix)
        try:
            return factory(target, **opts)
        except (OSError, ValueError) as exc:  # a missing path, the hub offline, an invalid repo id
            if isinstance(exc, AftError):
                raise
            raise AssetError(
                f"cannot load teacher {_shorten(name)!r}: {_first_line(exc)}; check the path or model id (offline, "
                "a hub model must already be in the local cache)"
            ) from None
    base, at, field_name = name.rpartition("@")
    if at and base in TEACHERS and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", field_name):
        raise ConfigError(f"teacher {name!r} names the field {field_name!r} of a multi-field dataset: extract / train "
                          f"with it on such a dataset, or build the teacher itself as {base!r}")
    valid = ", ".join(TEACHERS.names() + [f"{p}:<...>" for p in TEACHER_PREFIXES.names()])
    raise UnknownNameError(f"unknown teacher {name!r}; valid teachers: {valid}")


def split_name_options(target: str) -> tuple[str, dict[str, str]]:
    """``"path?pooling=cls&layers=4,8"`` -> ``("path", {"pooling": "cls", "layers": "4,8"})``.

    Options written into a prefixed teacher name (the CLI's way to pass them) are part of the name,
    so features made with other options go to another store.

    >>> split_name_options("org/model?pooling=cls&max_length=64")
    ('org/model', {'pooling': 'cls', 'max_length': 64})
    """
    base, sep, query = target.partition("?")
    if not sep:
        return target, {}
    opts: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key or not re.fullmatch(r"[a-z_]+", key):
            raise ConfigError(f"bad teacher option {part!r} in {target!r}; write name?key=value&key2=value2")
        if key in opts:
            raise ConfigError(f"teacher option {key!r} given twice in {target!r}")
        opts[key] = _name_value(value)
    return base, opts


def _name_value(text: str) -> Any:
    """An option value written in a name: ``"64"`` -> 64, ``"true"``/``"false"`` -> bool, else the text."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"true": True, "false": False}.get(text.lower(), text)


def options_name(prefix: str, target: str, options: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The canonical teacher name: ``prefix:target`` plus ``?k=v&...`` for options that differ from the defaults.

    >>> options_name("hf", "m", {"pooling": "cls", "layers": (4, 8)}, {"pooling": "mean", "layers": None})
    'hf:m?layers=4+8&pooling=cls'
    """
    def text(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return "+".join(text(x) for x in v)  # not ",": `--teachers` is comma-separated
        return str(v).lower() if isinstance(v, bool) else str(v)

    parts = [f"{k}={text(v)}" for k, v in sorted(options.items()) if v is not None and v != defaults.get(k)]
    return f"{prefix}:{target}" + ("?" + "&".join(parts) if parts else "")


def as_bool(value: Any, what: str) -> bool:
    """A bool from ``True``/``"true"``/``"1"``/``"yes"`` (and their negations), else a `ConfigError`."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{what} must be true or false, got {value!r}")


def as_layers(value: Any) -> tuple[int, ...] | None:
    """Hidden-layer indices from ``None``, an int, a list, or ``"4+8"`` / ``"4,8"`` / ``"-1"`` (a string from a name)."""
    if value is None:
        return None
    items = value.replace("+", ",").split(",") if isinstance(value, str) else (value if isinstance(value, (list, tuple)) else [value])
    try:
        layers = tuple(int(str(v).strip()) for v in items)
    except ValueError:
        raise ConfigError(f"layers must be integers (e.g. 4 or 4+8+-1), got {value!r}") from None
    if not layers or len(set(layers)) != len(layers):
        raise ConfigError(f"layers must name distinct layer indices, got {value!r}")
    return layers


def layer_blocks(layers: Sequence[int], dims: Sequence[int]) -> dict[str, list[int]]:
    """``{"layer=4": [0, d4], "layer=8": [d4, d4 + d8]}``: the column block of each layer's features."""
    blocks, start = {}, 0
    for layer, dim in zip(layers, dims, strict=True):
        blocks[f"layer={layer}"] = [start, start + int(dim)]
        start += int(dim)
    return blocks


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"


def _first_line(exc: BaseException) -> str:
    text = " ".join(p.strip() for p in str(exc).splitlines() if p.strip()) or type(exc).__name__
    return _shorten(text, 300)


def _ensure_builtins() -> None:
    """Import the adapter modules so that they register themselves."""
    import aft.teachers.hf  # noqa: F401
    import aft.teachers.openclip  # noqa: F401
    import aft.teachers.text  # noqa: F401
    import aft.teachers.vision  # noqa: F401

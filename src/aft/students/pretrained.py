"""`cnn-small-pt`: the small CNN started from its own pre-trained weights (STL as in the paper).

The weights come from supervised pre-training on a *source task disjoint from the target*, built
by aft itself, once, reproducibly: a `PretrainRecipe` (source dataset, architecture, seed, budget)
is hashed; `pretrained_cnn_weights(recipe)` returns ``<cache>/pretrained/cnn-small-<source>-<sha12>/
weights.safetensors``, training it first when it is missing (fixed seed, a few epochs on CPU) and
writing it atomically beside ``recipe.json`` (the recipe, its sha256, the weights' sha256, the
source data fingerprint, the source accuracy and the time it took). A changed recipe is a new
folder; weights whose sha256 differs from the recorded one are refused. Loading is safetensors only.

Sources: ``fashion-mnist`` (60,000 clothing images; the default, for the digits suite: handwritten
digits share no images or classes with clothing) and ``digits`` (scikit-learn's 1,438 training
digits, for a Fashion-MNIST target: a small source, but disjoint in images and classes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aft.atomic_io import atomic_write_bytes, atomic_write_json, sha256_file
from aft.errors import AssetError, ConfigError
from aft.students.base import STUDENTS
from aft.students.vision import SmallCNN

#: bump when the training procedure below changes (part of every recipe's sha256)
RECIPE_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
RECIPE_FILE = "recipe.json"
#: the layers carried over to the target task (the head is new: other classes)
TRANSFERRED = ("body.", "hidden.")


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that determines the pre-trained weights (hashed into `sha256`).

    Attributes:
        source: the source dataset (``"fashion-mnist"`` or ``"digits"``); its ``train`` split is used.
        width, feature_dim, image_size: the `SmallCNN` architecture (must match the student).
        num_images: how many source images (the first n of a seeded permutation; 0 = all).
        epochs, batch_size, lr, weight_decay: the Adam training budget.
        seed: initialization and shuffling seed.
    """

    source: str = "fashion-mnist"
    width: int = 16
    feature_dim: int = 128
    image_size: int = 16
    num_images: int = 0
    epochs: int = 2
    batch_size: int = 128
    lr: float = 0.003
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"unknown pre-training source {self.source!r}; valid: {', '.join(SOURCES)}")
        for name in ("width", "feature_dim", "image_size", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"pre-training recipe: {name} must be >= 1, got {getattr(self, name)}")
        if self.num_images < 0 or self.lr <= 0:
            raise ConfigError("pre-training recipe: num_images must be >= 0 and lr > 0")

    def to_dict(self) -> dict[str, object]:
        return {"recipe_version": RECIPE_VERSION, "student": "cnn-small", **asdict(self)}

    @property
    def sha256(self) -> str:
        """sha256 of the canonical JSON of the recipe (with `RECIPE_VERSION`)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def folder(self, cache_dir: str | os.PathLike[str] | None = None) -> Path:
        """``<cache>/pretrained/cnn-small-<source>-<sha12>``."""
        from aft.assets.core import resolve_cache_dir

        return resolve_cache_dir(cache_dir) / "pretrained" / f"cnn-small-{self.source}-{self.sha256[:12]}"


#: the default recipe per source: at 16 px, all 60,000 Fashion-MNIST images twice take about a
#: minute on one CPU core
SOURCES: dict[str, dict[str, object]] = {
    "fashion-mnist": {"num_images": 0, "epochs": 2},
    "digits": {"num_images": 0, "epochs": 30},
}


def default_recipe(source: str = "fashion-mnist", **overrides: object) -> PretrainRecipe:
    """The committed recipe for `source`, with `overrides` (e.g. ``width=32``)."""
    if source not in SOURCES:
        raise ConfigError(f"unknown pre-training source {source!r}; valid: {', '.join(SOURCES)}")
    return replace(PretrainRecipe(source=source), **{**SOURCES[source], **overrides})  # type: ignore[arg-type]


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(folder.parent / f".{folder.name}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check(folder: Path, recipe: PretrainRecipe) -> str:
    """Why `folder` does not hold valid weights of `recipe` ("" when it does, "missing" when absent)."""
    weights, meta_file = folder / WEIGHTS_FILE, folder / RECIPE_FILE
    if not weights.is_file() or not meta_file.is_file():
        return "missing"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{meta_file} is unreadable"
    if not isinstance(meta, dict) or meta.get("recipe_sha256") != recipe.sha256:
        return f"{meta_file} records another recipe"
    if sha256_file(weights) != meta.get("weights_sha256"):
        return f"{weights} differs from the sha256 recorded in {RECIPE_FILE} (corrupted or modified)"
    return ""


def pretrained_cnn_weights(recipe: PretrainRecipe | None = None,
                           cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The safetensors file of `recipe`'s pre-trained `SmallCNN`, training it first when missing.

    Raises:
        AssetError: the cached weights fail their recorded sha256 (delete the folder to rebuild).
    """
    recipe = recipe or default_recipe()
    folder = recipe.folder(cache_dir)
    reason = _check(folder, recipe)
    if reason == "missing":
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _lock(folder):
            if _check(folder, recipe) == "missing":  # another process may have built it meanwhile
                _build(recipe, folder, cache_dir)
        reason = _check(folder, recipe)
    if reason:
        raise AssetError(f"pre-trained cnn-small weights: {reason}; refusing them: delete {folder} to rebuild")
    return folder / WEIGHTS_FILE


def _source_split(recipe: PretrainRecipe, cache_dir: str | os.PathLike[str] | None):  # type: ignore[no-untyped-def]
    from aft.data import load_split

    train = load_split(recipe.source, "train", cache_dir=cache_dir)
    if recipe.num_images and recipe.num_images < len(train):
        keep = np.sort(np.random.default_rng(recipe.seed).permutation(len(train))[: recipe.num_images])
        train = train.subset(keep)
    return train


def pretrain_cnn(recipe: PretrainRecipe, cache_dir: str | os.PathLike[str] | None = None
                 ) -> tuple[SmallCNN, dict[str, object]]:
    """Train a `SmallCNN` on `recipe`'s source task; returns it and a summary (accuracy, seconds)."""
    t0 = time.perf_counter()
    train = _source_split(recipe, cache_dir)
    torch.manual_seed(recipe.seed)
    model = SmallCNN(train.num_classes, width=recipe.width, feature_dim=recipe.feature_dim,
                     image_size=recipe.image_size)
    x = model.preprocess(train.inputs)
    y = torch.as_tensor(train.labels)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    rng = np.random.default_rng(recipe.seed)
    model.train()
    for _ in range(recipe.epochs):
        order = torch.from_numpy(rng.permutation(len(y)))
        for start in range(0, len(y), recipe.batch_size):
            idx = order[start: start + recipe.batch_size]
            logits, _ = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i: i + 1024])[0].argmax(1) for i in range(0, len(y), 1024)])
    summary = {"source_train_accuracy": float((pred == y).float().mean()), "num_images": len(y),
               "source_fingerprint": train.fingerprint(), "seconds": round(time.perf_counter() - t0, 1)}
    return model, summary


def _build(recipe: PretrainRecipe, folder: Path, cache_dir: str | os.PathLike[str] | None) -> None:
    from aft.students.io import safetensors_bytes, state_for_safetensors

    model, summary = pretrain_cnn(recipe, cache_dir)
    state = {k: v for k, v in state_for_safetensors(model).items() if k.startswith(TRANSFERRED)}
    data = safetensors_bytes(state, metadata={"recipe_sha256": recipe.sha256})
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / WEIGHTS_FILE, data)
    meta = {"recipe": recipe.to_dict(), "recipe_sha256": recipe.sha256,
            "weights_sha256": hashlib.sha256(data).hexdigest(), "torch": torch.__version__, **summary}
    atomic_write_json(folder / RECIPE_FILE, meta)  # written last: its presence means the weights are complete


def load_pretrained_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The transferred tensors of a pre-trained weights file (safetensors only)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except (OSError, SafetensorError) as exc:
        raise AssetError(f"pre-trained weights {path} are unreadable ({exc!s:.80}); pass a safetensors file "
                         "written by aft.students.pretrained") from None
    return state


class PretrainedSmallCNN(SmallCNN):
    """`SmallCNN` whose conv body and feature layer start from weights pre-trained on `source`.

    Args:
        num_classes: target classes (the head is new, initialized at random).
        source: the pre-training task: ``"fashion-mnist"`` (default) or ``"digits"``; pick one
            disjoint from the target task.
        width, feature_dim, dropout, image_size: as `SmallCNN` (the recipe uses the same); the
            input side defaults to 16 px (not 28): pre-training then takes about a minute on CPU.
        weights: a safetensors file to start from instead of the cached pre-training.
        cache_dir: asset cache holding (or receiving) the pre-trained weights.
    """

    name = "cnn-small-pt"

    def __init__(self, num_classes: int, source: str = "fashion-mnist", width: int = 16,
                 feature_dim: int = 128, dropout: float = 0.0, image_size: int = 16,
                 weights: str | None = None, cache_dir: str | None = None) -> None:
        super().__init__(num_classes, width=width, feature_dim=feature_dim, dropout=dropout, image_size=image_size)
        self.options.update({"source": source, "weights": weights, "cache_dir": cache_dir})
        if weights:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise AssetError(f"pre-trained weights file {str(path)!r} does not exist; pass an existing file")
        else:
            recipe = default_recipe(source, width=int(width), feature_dim=int(feature_dim),
                                    image_size=int(image_size))
            path = pretrained_cnn_weights(recipe, cache_dir)
        state = load_pretrained_state(path)
        own = self.state_dict()
        wanted = [k for k in own if k.startswith(TRANSFERRED)]
        bad = [k for k in wanted if k not in state or state[k].shape != own[k].shape]
        if bad or set(state) - set(wanted):
            raise AssetError(f"pre-trained weights {path} do not fit cnn-small width={width} "
                             f"feature_dim={feature_dim} (e.g. {(bad or sorted(set(state) - set(wanted)))[0]}); "
                             "use the width and feature_dim they were trained with")
        self.load_state_dict(state, strict=False)
        self.weights_path = path


STUDENTS.add("cnn-small-pt", PretrainedSmallCNN)

"""The dataset registry: `DATASETS`, `load_split` and `dataset_info`.

A dataset is registered as a `DatasetSource`: a loader ``loader(split, *, cache_dir, **options)
-> DatasetSplit`` plus metadata. Built-in sources are registered by `aft.data.builtin`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from aft.data.options import normalize_options
from aft.data.split import DatasetSplit, Modality
from aft.errors import ConfigError, DataError
from aft.registry import Registry

Loader = Callable[..., DatasetSplit]


@dataclass(frozen=True)
class DatasetSource:
    """A named dataset: how to load its splits, and what it is.

    Attributes:
        name: registry name (``"fashion-mnist"``).
        loader: ``loader(split, *, cache_dir=None, **options) -> DatasetSplit``.
        modality: ``"image"`` or ``"text"``.
        description: one line for listings.
        splits: the split names it has; empty for generic sources (the split picks a file/folder).
        class_names: fixed class names, empty when they depend on the data (generic sources).
        asset: the `aft.assets` asset it reads, if any.
        sizes: split name -> number of samples, where fixed.
    """

    name: str
    loader: Loader
    modality: Modality
    description: str
    splits: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    asset: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)

    def options(self) -> dict[str, object]:
        """The loader's options and their defaults (``inspect.Parameter.empty`` = required)."""
        params = inspect.signature(self.loader).parameters
        return {n: p.default for n, p in params.items() if n not in ("split", "cache_dir")}


@dataclass(frozen=True)
class DatasetInfo:
    """What `dataset_info` returns (no data is loaded)."""

    name: str
    modality: Modality
    description: str
    splits: tuple[str, ...]
    class_names: tuple[str, ...]
    num_classes: int | None
    asset: str | None
    sizes: dict[str, int]
    options: dict[str, object]


DATASETS: Registry[DatasetSource] = Registry("dataset")


def register_dataset(source: DatasetSource) -> DatasetSource:
    """Add a `DatasetSource` to `DATASETS` (the way to plug in your own loader)."""
    return DATASETS.add(source.name, source)


def _get(name: str) -> DatasetSource:
    import aft.data.builtin  # noqa: F401  (registers the built-in datasets)

    return DATASETS.get(name)


def dataset_names() -> list[str]:
    """All registered dataset names, sorted."""
    import aft.data.builtin  # noqa: F401

    return DATASETS.names()


def dataset_info(name: str) -> DatasetInfo:
    """Metadata of dataset `name`: modality, splits, class names, sizes, loader options."""
    src = _get(name)
    return DatasetInfo(
        name=src.name,
        modality=src.modality,
        description=src.description,
        splits=src.splits,
        class_names=src.class_names,
        num_classes=len(src.class_names) or None,
        asset=src.asset,
        sizes=dict(src.sizes),
        options=src.options(),
    )


def load_split(
    name: str, split: str, /, *, cache_dir: str | os.PathLike[str] | None = None, **options: object
) -> DatasetSplit:
    """Load split `split` of dataset `name` as a `DatasetSplit`.

    Args:
        name: a registered dataset (`dataset_names()`), e.g. ``"fashion-mnist"``, ``"csv"``.
        split: ``"train"``, ``"test"``...; for generic sources it selects the file or folder.
        cache_dir: asset cache folder (default: ``AFT_CACHE_DIR`` or ``~/.cache/aft``).
        **options: loader options (see `dataset_info(name).options`); ``classes=`` ("a,b" or a
            list) is accepted for ``class_names``.

    Raises:
        UnknownNameError: unknown dataset. ConfigError: unknown split or option.
        DataError: missing or malformed data.
    """
    src = _get(name)
    if src.splits and split not in src.splits:
        raise ConfigError(f"dataset {name!r} has no split {split!r}; valid splits: {', '.join(src.splits)}")
    if not split:
        raise ConfigError(f"dataset {name!r}: the split name is empty; e.g. use 'train' or 'test'")
    valid = src.options()
    options = normalize_options(options, valid)
    unknown = [k for k in options if k not in valid]
    if unknown:
        listed = ", ".join(valid) or "(none)"
        raise ConfigError(f"dataset {name!r} has no option {unknown[0]!r}; valid options: {listed}")
    missing = [k for k, d in valid.items() if d is inspect.Parameter.empty and k not in options]
    if missing:
        raise ConfigError(f"dataset {name!r} needs the option {missing[0]!r}; e.g. {missing[0]}=...")
    result = src.loader(split, cache_dir=cache_dir, **options)
    if len(result) == 0:
        raise DataError(f"{name}/{split}: the split is empty; check the data source")
    return result

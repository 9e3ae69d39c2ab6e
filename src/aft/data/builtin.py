"""Registers the built-in datasets in `aft.data.registry.DATASETS` (imported lazily)."""

from __future__ import annotations

from aft.data import (
    austen,
    digits,
    fashion_mnist,
    hf,
    imagefolder,
    parquet,
    spam_assassin,
    tabular,
    webdataset,
)
from aft.data.registry import DATASETS, DatasetSource

_BUILTIN = [
    DatasetSource(
        name="fashion-mnist",
        loader=fashion_mnist.load_fashion_mnist,
        modality="image",
        description="Fashion-MNIST, 28x28 gray clothing images, official split",
        splits=("train", "test"),
        class_names=fashion_mnist.CLASS_NAMES,
        asset="fashion-mnist",
        sizes={"train": 60000, "test": 10000},
    ),
    DatasetSource(
        name="spam-assassin",
        loader=spam_assassin.load_spam_assassin,
        modality="text",
        description="SpamAssassin emails, ham vs spam, committed 80/20 split (v1)",
        splits=("train", "test"),
        class_names=spam_assassin.CLASS_NAMES,
        asset="spam-assassin",
        sizes={"train": 4837, "test": 1209},
    ),
    DatasetSource(
        name="austen",
        loader=austen.load_austen,
        modality="text",
        description="Jane Austen's six novels, 4-line passages, which novel; committed 80/20 split (v1)",
        splits=("train", "test"),
        class_names=austen.CLASS_NAMES,
        asset="austen",
        sizes={"train": 12279, "test": 3070},
    ),
    DatasetSource(
        name="digits",
        loader=digits.load_digits_split,
        modality="image",
        description="8x8 digits (bundled with aft), seeded stratified 80/20 split",
        splits=("train", "test"),
        class_names=digits.CLASS_NAMES,
        sizes={"train": 1438, "test": 359},
    ),
    DatasetSource(
        name="csv",
        loader=tabular.load_csv,
        modality="text",
        description="your texts in CSV: path=<folder with <split>.csv> | <file> | 'data/{split}.csv'",
    ),
    DatasetSource(
        name="jsonl",
        loader=tabular.load_jsonl,
        modality="text",
        description="your texts in JSON lines: path=<folder with <split>.jsonl> | <file> | template",
    ),
    DatasetSource(
        name="imagefolder",
        loader=imagefolder.load_imagefolder,
        modality="image",
        description="your images: path=<root> with <root>/<split>/<class>/<image>",
    ),
    DatasetSource(
        name="parquet",
        loader=parquet.load_parquet,
        modality="any",  # type: ignore[arg-type] - texts or images, by the input column
        description="your texts or images in Parquet: path=<folder with <split>.parquet> | <file> | "
        "'data/{split}-*.parquet'",
    ),
    DatasetSource(
        name="hf",
        loader=hf.load_hf,
        modality="any",  # type: ignore[arg-type]
        description="a Hugging Face datasets folder (save_to_disk): path=<folder> [split from a DatasetDict]",
    ),
    DatasetSource(
        name="webdataset",
        loader=webdataset.load_webdataset,
        modality="any",  # type: ignore[arg-type]
        description="WebDataset tar shards (<key>.jpg/.txt + .cls): path=<folder with <split>-*.tar> | "
        "'shards/{split}-{000..009}.tar'",
    ),
]

for _src in _BUILTIN:
    DATASETS.add(_src.name, _src)

from aft.data import multifield  # noqa: E402, F401 - registers the multi-field sources (issue 19)

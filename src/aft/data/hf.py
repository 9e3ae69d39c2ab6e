"""Datasets from Hugging Face `datasets` folders written by ``save_to_disk``, read lazily.

`path` is a folder written by ``DatasetDict.save_to_disk`` (the split selects one of its
datasets), by ``Dataset.save_to_disk`` (read as is, whatever the split name), or a template with
``{split}`` naming one such folder per split. The Arrow files are memory-mapped
(``datasets.load_from_disk``): loading reads the label (and id) column, and for texts one pass
over the text column in chunks to check it and record the lengths; inputs are read per batch
(``dataset.with_format("arrow")[rows]``), images as their encoded bytes, decoded by aft, never by
`datasets`. Nothing is fetched from the Hub and no dataset script runs (no ``trust_remote_code``).

Columns as for the `parquet` loader: `text_column` or `image_column` (default ``image`` if it
holds images, else ``text``), `label_column` (a ``ClassLabel`` gives the class names), `id_column`
(default ``<split>-<row>``).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aft.data.columnar import (
    LazyRecords,
    arrow_image_kind,
    arrow_label_codes,
    arrow_text_lengths,
    hash_files,
    image_spec,
    image_value,
    is_image_type,
    label_classes,
    make_ids,
    pick_column,
    require,
    require_column,
)
from aft.data.imagefolder import _size_option
from aft.data.options import path_label
from aft.data.split import DatasetSplit
from aft.errors import DataError

#: rows per chunk of the text check at load time (bounded transient memory)
TEXT_CHUNK = 16384


def _is_dataset_dir(d: Path) -> bool:
    return (d / "state.json").is_file() and (d / "dataset_info.json").is_file()


def split_dirs(path: str | os.PathLike[str], split: str) -> tuple[Path, list[tuple[str, Path]]]:
    """The saved-dataset folder of `split` and the ``(name, folder)`` of the other splits (for class names)."""
    spath = str(path)
    if "{split}" in spath:
        d = Path(spath.replace("{split}", split))
        if not _is_dataset_dir(d):
            raise DataError(f"{d} is not a dataset folder written by Dataset.save_to_disk (no state.json); "
                            "check the path option")
        pattern = glob.escape(spath).replace(glob.escape("{split}"), "*")
        others = [(p, Path(p)) for p in sorted(glob.glob(pattern))
                  if _is_dataset_dir(Path(p)) and Path(p).resolve() != d.resolve()]
        return d, others
    root = Path(spath)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} not found; check the path option")
    manifest = root / "dataset_dict.json"
    if manifest.is_file():
        try:
            splits = [str(s) for s in json.loads(manifest.read_text(encoding="utf-8"))["splits"]]
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{manifest} is not a DatasetDict manifest; write the folder again with "
                            "DatasetDict.save_to_disk") from None
        if split not in splits:
            raise DataError(f"{root} has no split {split!r} (splits: {', '.join(splits) or 'none'}); "
                            "pick one of them")
        if not _is_dataset_dir(root / split):
            raise DataError(f"{root / split} is missing or incomplete (no state.json); write the folder again "
                            "with DatasetDict.save_to_disk")
        return root / split, [(str(root / s), root / s) for s in splits if s != split and _is_dataset_dir(root / s)]
    if _is_dataset_dir(root):
        return root, []
    raise DataError(f"{root} is not a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk (no "
                    "state.json or dataset_dict.json); save the dataset with save_to_disk, or use the "
                    "parquet/csv/jsonl loaders for its files")


def _load(d: Path) -> Any:
    datasets = require("datasets", "the hf dataset")
    try:
        state = json.loads((d / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{d}/state.json cannot be read ({exc}); write the dataset again with save_to_disk") from None
    if isinstance(state, dict) and state.get("_data_files") == []:  # what save_to_disk writes for no rows
        raise DataError(f"{d}: the dataset has no rows (no Arrow files); write at least one sample")
    try:
        ds = datasets.load_from_disk(str(d))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DataError(f"cannot open the dataset folder {d} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__:.120}); "
                        "write it again with save_to_disk") from None
    if not isinstance(ds, datasets.Dataset):
        raise DataError(f"{d} holds a DatasetDict, not one split; pass its parent folder as path")
    return ds


#: the `datasets` packaged builders `builder=` may name, and the file extension of their data
BUILDERS = {"parquet": "parquet", "csv": "csv", "json": "jsonl"}


def _built(datasets: Any, builder: str, path: str, split: str, hf_cache: str | None) -> tuple[Path, Any, list]:
    """``datasets.load_dataset(builder, data_files=...)`` for one split's files (local files only:
    a packaged builder, never a Hub dataset or a dataset script)."""
    from aft.data.shards import all_split_files, resolve_split_files
    from aft.errors import ConfigError

    if builder not in BUILDERS:
        raise ConfigError(f"builder must be one of {', '.join(BUILDERS)} (a local data-file format), got {builder!r}")
    files = resolve_split_files(path, split, BUILDERS[builder])
    this = {f.resolve() for f in files}
    rest = [str(f) for f in all_split_files(path, BUILDERS[builder]) if f.resolve() not in this]

    def load(data_files: list[str], name: str) -> Any:
        shown = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # no "Generating data split" bars in aft's output
        try:
            return datasets.load_dataset(builder, data_files={name: data_files}, split=name, cache_dir=hf_cache)
        except Exception as exc:  # noqa: BLE001 - any failure of the builder is a problem with the data files
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"datasets.load_dataset({builder!r}) cannot read {data_files[0]} ({first:.150}); "
                            f"check the files, or use aft's own {builder if builder != 'json' else 'jsonl'} loader") from None
        finally:
            if shown:
                datasets.enable_progress_bars()

    others = [(f"{Path(rest[0]).parent} (other splits)", lambda: load(rest, "other"))] if rest else []
    return files[0], load([str(f) for f in files], "data"), others


def _column(ds: Any, column: str) -> Any:
    """One column as a pyarrow ChunkedArray (memory-mapped; the row order of the dataset)."""
    return ds.with_format("arrow", columns=[column])[:].column(0)


class HfRows:
    """A `aft.data.columnar.RowReader` over one column of a `datasets.Dataset` (memory-mapped Arrow
    files; pickling it, to a DataLoader worker, sends the file paths, not the data).

    Args:
        dataset: the split's dataset.
        column: the input column.
        image: whether it holds images (binary or ``{bytes, path}``) rather than texts.
        base: the folder relative image paths are read from.
    """

    def __init__(self, dataset: Any, column: str, image: bool, base: Path) -> None:
        self.dataset = dataset.with_format("arrow", columns=[column])
        self.column, self.image, self.base = column, image, str(base)
        self.files = [f["filename"] for f in dataset.cache_files]

    def read(self, rows: np.ndarray) -> list[Any]:
        values = self.dataset[[int(r) for r in rows]].column(0).to_pylist()
        if not self.image:
            return values
        base = Path(self.base)
        return [image_value(v, self.describe(int(r)), base) for r, v in zip(rows, values, strict=True)]

    def describe(self, row: int) -> str:
        return f"{self.base} row {row}"

    def signature(self, h: Any) -> None:
        h.update(f"hf|{self.column}|".encode())
        hash_files(h, self.files)


def _other_labels(others: Sequence[tuple[str, Any]], label_column: str) -> Iterator[tuple[str, int, Any]]:
    for where, d in others:
        ds = d() if callable(d) else _load(d)
        if label_column not in ds.column_names:
            continue
        _, distinct, first = arrow_label_codes(str(where), _column(ds, label_column), label_column)
        yield from ((str(where), int(r), v) for r, v in zip(first, distinct, strict=True))


def load_hf(
    split: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    path: str,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str = "label",
    id_column: str | None = None,
    class_names: Sequence[str] | None = None,
    mode: str | None = None,
    size: int | Sequence[int] | None = None,
    name: str | None = None,
    lazy: bool = True,
    builder: str | None = None,
    hf_cache: str | None = None,
) -> DatasetSplit:
    """Index a split of a saved Hugging Face dataset (see the module docstring; options as `load_parquet`).

    Args:
        builder: ``parquet``, ``csv`` or ``json``: `path` names data files (as for the `parquet`
            loader: a folder with ``<split>.<ext>``, a ``{split}`` template, a file), read with
            ``datasets.load_dataset(builder, data_files=...)`` (converted once to Arrow in `hf_cache`).
        hf_cache: the `datasets` cache folder for `builder` (default: the `datasets` default,
            ``~/.cache/huggingface/datasets``).
    """
    require("pyarrow", "the hf dataset")
    datasets = require("datasets", "the hf dataset")
    if builder is not None:
        folder, ds, others = _built(datasets, builder, path, split, hf_cache)
    else:
        folder, others = split_dirs(path, split)
        ds = _load(folder)
    where = str(folder)
    columns = list(ds.column_names)
    schema = ds.data.schema
    modality, column = pick_column(where, columns, text_column, image_column,
                                   lambda c: is_image_type(schema.field(c).type))
    require_column(where, columns, label_column, "label_column")
    if id_column is not None:
        require_column(where, columns, id_column, "id_column")
    n = ds.num_rows
    if n == 0:
        raise DataError(f"{where}: split {split!r} has no rows; write at least one sample")
    col = _column(ds, column)
    lengths = None
    if modality == "text":
        lengths = np.concatenate([arrow_text_lengths(where, col.slice(s, TEXT_CHUNK), column, s)
                                  for s in range(0, n, TEXT_CHUNK)])
        spec = None
    else:
        arrow_image_kind(where, col.type, column)
        first = f"{where} row 0"
        spec = image_spec(image_value(col[0].as_py(), first, folder), first, mode, _size_option(size))
    del col
    codes, distinct, first_rows = arrow_label_codes(where, _column(ds, label_column), label_column)
    feature = ds.features.get(label_column)
    known = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    names, mapped = label_classes(where, distinct, [int(r) for r in first_rows],
                                  lambda: _other_labels(others, label_column), class_names, known)
    given = _column(ds, id_column).to_pylist() if id_column is not None else None
    stem = folder.name if builder is None else folder.stem  # <split>-<row> for a DatasetDict, <file-stem>-<row>
    ids = make_ids(where, given, ((stem, r) for r in range(n)), n)
    reader = HfRows(ds, column, modality == "image", folder if builder is None else folder.parent)
    inputs = LazyRecords(reader, n, modality, image=spec, lengths=lengths)
    return DatasetSplit(
        dataset=name or path_label(path),
        split=split,
        ids=ids,
        inputs=inputs if lazy else inputs.materialize(),
        labels=mapped[codes],
        class_names=names,
        modality=modality,  # type: ignore[arg-type]
        _ids_unique=True,
    )


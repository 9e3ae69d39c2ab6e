"""Datasets whose samples have several named fields (image + text, premise + hypothesis).

A `MultiFieldSplit` is a `DatasetSplit` (modality ``"multi"``) whose ``inputs`` are a `FieldRows`
table: one column per field, each an image array ``(N, H, W[, 3])`` or a list of texts. A teacher
applies to one field, written ``teacher@field`` (``efficientnet-lite0@image``, ``minilm@text``):
`field_split` gives that field alone as an ordinary single-modality split, named
``<dataset>@<field>``, so extraction, the feature store (its path and content fingerprint) and
verification work unchanged and stores are keyed by (teacher, field).

Sources (registered in `aft.data.DATASETS`):

* ``multifield-csv`` / ``multifield-jsonl``: a table with a label column, image columns (paths
  relative to the file's folder) and text columns; each column is a field named after it.
  ``path`` is a folder with ``<split>.csv``, a template with ``{split}``, or a file.
* ``image-captions``: ``<path>/<split>/<class>/<image>`` plus a captions file
  ``<path>/<split>/captions.jsonl`` (rows ``{"file": "<class>/<image>", "text": "..."}``, or a
  CSV with those columns); fields ``image`` and ``text``.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aft.data.registry import DatasetSource, register_dataset
from aft.data.split import DatasetSplit
from aft.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
FieldData = np.ndarray | list[str]


class FieldRows(Sequence[dict[str, Any]]):
    """A column table of fields; ``rows[i]`` is one sample's ``{field: value}``; slices stay tables.

    Args:
        columns: ``{field: image array (N, ...) or list of N texts}`` (all of one length).
    """

    def __init__(self, columns: Mapping[str, FieldData]) -> None:
        self.columns: dict[str, FieldData] = dict(columns)
        lengths = {name: len(col) for name, col in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"fields have different lengths {lengths}; every sample needs every field")
        self._n = next(iter(lengths.values()), 0)

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]] | FieldRows) -> FieldRows:
        """A table from per-sample dicts (what a list comprehension over ``rows[i]`` gives)."""
        if isinstance(records, FieldRows):
            return records
        if not records:
            raise DataError("no samples given; pass at least one {field: value} record")
        names = list(records[0])
        cols: dict[str, FieldData] = {}
        for name in names:
            values = [r[name] for r in records]
            cols[name] = values if isinstance(values[0], str) else np.stack([np.asarray(v) for v in values])
        return cls(cols)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int | np.integer):
            return {name: col[int(index)] for name, col in self.columns.items()}
        idx = np.arange(self._n)[index] if isinstance(index, slice) else np.asarray(index, dtype=np.int64)
        return FieldRows({name: col[idx] if isinstance(col, np.ndarray) else [col[int(i)] for i in idx]
                          for name, col in self.columns.items()})

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(self._n):
            yield self[i]

    def __repr__(self) -> str:
        return f"FieldRows({self._n} samples, fields {list(self.columns)})"


@dataclass(frozen=True)
class MultiFieldSplit(DatasetSplit):
    """A labeled split with several named fields; ``inputs`` is a `FieldRows` table.

    Attributes:
        field_modalities: ``{field: "image" | "text"}``, in column order.
    """

    field_modalities: dict[str, str] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.inputs, FieldRows):
            raise DataError(f"{self.dataset}/{self.split}: a multi-field split needs FieldRows inputs")
        if set(self.field_modalities) != set(self.inputs.columns):
            raise DataError(f"{self.dataset}/{self.split}: field modalities {sorted(self.field_modalities)} do not "
                            f"match the fields {sorted(self.inputs.columns)}")
        super().__post_init__()

    @property
    def fields(self) -> list[str]:
        """The field names."""
        return list(self.field_modalities)

    def field_split(self, name: str) -> DatasetSplit:
        """Field `name` alone as a single-modality split named ``<dataset>@<name>`` (same ids and labels)."""
        if name not in self.field_modalities:
            raise ConfigError(f"{self.dataset} has no field {name!r}; its fields: {', '.join(self.fields)}")
        assert isinstance(self.inputs, FieldRows)
        return DatasetSplit(
            dataset=f"{self.dataset}@{name}", split=self.split, ids=list(self.ids), inputs=self.inputs.columns[name],
            labels=self.labels, class_names=list(self.class_names), modality=self.field_modalities[name],  # type: ignore[arg-type]
        )

    def subset(self, indices: Sequence[int] | np.ndarray, split: str | None = None) -> MultiFieldSplit:
        idx = np.asarray(indices, dtype=np.int64)
        assert isinstance(self.inputs, FieldRows)
        return MultiFieldSplit(
            dataset=self.dataset, split=split or self.split, ids=[self.ids[i] for i in idx], inputs=self.inputs[idx],
            labels=self.labels[idx], class_names=list(self.class_names), modality=self.modality,
            field_modalities=dict(self.field_modalities),
        )

    def fingerprint(self) -> str:
        """sha256 over ids, labels, class names and every field's name, modality and content."""
        if self._fingerprint:
            return self._fingerprint[0]
        h = hashlib.sha256(b"multi")
        for name in self.fields:
            h.update(self.field_split(name).fingerprint().encode() + name.encode() + b"\x1f")
        digest = h.hexdigest()
        self._fingerprint.append(digest)
        return digest


def split_field(spec: str) -> tuple[str, str | None]:
    """``"minilm@text"`` -> ``("minilm", "text")``; a spec without a trailing ``@field`` -> ``(spec, None)``.

    >>> split_field("hf:org/model?pooling=cls@premise")
    ('hf:org/model?pooling=cls', 'premise')
    """
    base, sep, name = spec.rpartition("@")
    if sep and base and FIELD_NAME.match(name):
        return base, name
    return spec, None


def select_field(split: DatasetSplit, spec: str) -> tuple[str, DatasetSplit]:
    """The teacher name and the split it encodes: field ``@f`` of a multi-field split, else `split`.

    Raises:
        ConfigError: a field named on a single-field split, or none named on a multi-field one.
    """
    teacher, name = split_field(spec)
    if isinstance(split, MultiFieldSplit):
        if name is None:
            raise ConfigError(f"{split.dataset} has fields {', '.join(split.fields)}; name the one teacher "
                              f"{spec!r} encodes, e.g. {spec}@{split.fields[0]}")
        return teacher, split.field_split(name)
    if name is not None and not split.dataset.endswith(f"@{name}"):
        raise ConfigError(f"teacher {spec!r} names field {name!r} but {split.dataset} has one field; "
                          f"drop @{name} or use a multi-field dataset")
    return (teacher if name is not None else spec), split


def select_teacher_field(split: DatasetSplit, teacher: Any) -> tuple[Any, DatasetSplit]:
    """`select_field` for a teacher name or `Teacher` object: the teacher without ``@field``, and its split.

    A `Teacher` named ``"x@field"`` comes back as a shallow copy named ``"x"``: a store is keyed by
    the teacher's own name and the field's split (``<dataset>@<field>``), however it was named.
    """
    if isinstance(teacher, str):
        return select_field(split, teacher)
    base, field_split = select_field(split, teacher.name)
    if base != teacher.name:
        teacher = copy.copy(teacher)
        teacher.name = base
    return teacher, field_split


def build_field_teacher(spec: str, **options: Any) -> Any:
    """`aft.teachers.build_teacher` for ``teacher@field``: the teacher itself, named with its field.

    `extract` / `open_features` then encode that field of a multi-field split (and refuse any other split).
    """
    from aft.teachers import build_teacher

    base, name = split_field(spec)
    if name is None:
        return build_teacher(spec, **options)
    teacher = build_teacher(base, **options)
    teacher.name = spec
    return teacher


# --- reading -------------------------------------------------------------------------------------
def _resolve(path: str | os.PathLike[str], split: str, ext: str) -> Path:
    spath = str(path)
    if "{split}" in spath:
        target = Path(spath.replace("{split}", split))
    elif Path(spath).is_dir():
        target = Path(spath) / f"{split}.{ext}"
    else:
        target = Path(spath)
    if not target.is_file():
        raise DataError(f"data file {target} not found; check the path option (a folder with <split>.{ext}, a file, "
                        "or a template with {split})")
    return target


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of a CSV (by its ``.csv`` suffix) or JSON-lines file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not valid UTF-8; re-save the file as UTF-8") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            return [(reader.line_num, dict(r)) for r in reader]
        except csv.Error as exc:
            raise DataError(f"{path}: line {reader.line_num} is not valid CSV ({exc}); fix the quoting") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}: line {lineno} is not valid JSON ({exc.args[0]}); one object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {lineno} is not a JSON object; write one {{...}} object per line")
        out.append((lineno, row))
    return out


def _columns(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(c).strip() for c in items if str(c).strip()]


def _size(size: int | Sequence[int] | str | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, str):
        size = [int(s) for s in size.replace("x", ",").split(",")]
    if isinstance(size, int):
        return (size, size)
    w, h = (int(s) for s in size)
    return (w, h)


def load_images(files: Sequence[Path], mode: str | None = None, size: int | Sequence[int] | str | None = None) -> np.ndarray:
    """uint8 ``(N, H, W)`` or ``(N, H, W, 3)``; one mode and size for all (or converted to `mode`/`size`)."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError("image fields need Pillow; install it with `pip install pillow`") from None
    if mode is not None and mode not in ("L", "RGB"):
        raise ConfigError(f"mode must be 'L' or 'RGB', got {mode!r}")
    target = _size(size)
    arrays: list[np.ndarray] = []
    first: tuple[Path, str, tuple[int, int]] | None = None
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                want = mode or (first[1] if first else ("L" if im.mode in ("L", "1", "P", "I;16") else "RGB"))
                out = im.convert(want)
                if target is not None and out.size != target:
                    out = out.resize(target, Image.BILINEAR)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"cannot read image {f} ({exc!s:.100}); fix the path or replace the file") from None
        if first is None:
            first = (f, want, out.size)
        elif out.size != first[2]:
            raise DataError(f"image {f} is {out.size[0]}x{out.size[1]} but {first[0].name} is "
                            f"{first[2][0]}x{first[2][1]}; pass size=WxH to resize all images")
        arrays.append(np.asarray(out, dtype=np.uint8))
    return np.stack(arrays)


def _labels(path: Path, values: list[tuple[int, Any]], class_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """Class indices and names: labels are class names, or integers 0..K-1 (names "0".."K-1")."""
    raw = []
    for lineno, v in values:
        if v is None or str(v).strip() == "":
            raise DataError(f"{path}: line {lineno}: the label is empty; every sample needs a label")
        raw.append(str(v).strip())
    if class_names is not None:
        names = [str(c) for c in class_names]
    elif all(s.isdigit() for s in raw):
        names = [str(i) for i in range(max(int(s) for s in raw) + 1)]
    else:
        names = sorted(set(raw))
    index = {n: i for i, n in enumerate(names)}
    out = []
    for (lineno, _), s in zip(values, raw, strict=True):
        if s in index:
            out.append(index[s])
        elif s.isdigit() and int(s) < len(names):
            out.append(int(s))
        else:
            raise DataError(f"{path}: line {lineno}: label {s!r} is not one of the classes ({', '.join(names)}); "
                            "fix the label or class_names")
    return np.asarray(out, dtype=np.int64), names


def _load_table(
    split: str, ext: str, path: str, image_columns: str | Sequence[str] | None, text_columns: str | Sequence[str] | None,
    label_column: str, id_column: str | None, class_names: Sequence[str] | None, mode: str | None,
    size: int | Sequence[int] | str | None, name: str | None,
) -> MultiFieldSplit:
    file = _resolve(path, split, ext)
    images, texts = _columns(image_columns), _columns(text_columns)
    if not images and not texts:
        raise ConfigError("name the fields: image_columns=<col,...> and/or text_columns=<col,...>")
    for col in images + texts:
        if not FIELD_NAME.match(col):
            raise ConfigError(f"column {col!r} cannot name a field (letters, digits, _ and -); rename the column")
    dup = sorted({c for c in images + texts if (images + texts).count(c) > 1})
    if dup:
        raise ConfigError(f"column {dup[0]!r} is listed twice; give each field column once")
    rows = read_rows(file)
    if not rows:
        raise DataError(f"{file} holds no samples; it needs a header row and at least one sample")
    for col in [label_column, *images, *texts] + ([id_column] if id_column else []):
        missing = next((ln for ln, r in rows if col not in r), None)
        if missing is not None:
            raise DataError(f"{file}: line {missing} has no column {col!r} (columns: {', '.join(map(repr, rows[0][1]))}); "
                            f"check image_columns / text_columns / label_column")
    cols: dict[str, FieldData] = {}
    modalities: dict[str, str] = {}
    for col in images:
        files = []
        for lineno, r in rows:
            rel = str(r[col] or "").strip()
            if not rel:
                raise DataError(f"{file}: line {lineno}: image column {col!r} is empty; every sample needs its image")
            files.append((file.parent / rel) if not Path(rel).is_absolute() else Path(rel))
        cols[col], modalities[col] = load_images(files, mode, size), "image"
    for col in texts:
        cols[col] = ["" if r[col] is None else str(r[col]) for _, r in rows]
        modalities[col] = "text"
    labels, names = _labels(file, [(ln, r[label_column]) for ln, r in rows], class_names)
    ids = [str(r[id_column]) for _, r in rows] if id_column else [f"{file.stem}:{ln}" for ln, _ in rows]
    return MultiFieldSplit(dataset=name or file.parent.name, split=split, ids=ids, inputs=FieldRows(cols), labels=labels,
                           class_names=names, modality="multi", field_modalities=modalities)  # type: ignore[arg-type]


def load_multifield_csv(
    split: str, *, cache_dir: str | os.PathLike[str] | None = None, path: str,
    image_columns: str | Sequence[str] | None = None, text_columns: str | Sequence[str] | None = None,
    label_column: str = "label", id_column: str | None = None, class_names: Sequence[str] | None = None,
    mode: str | None = None, size: int | Sequence[int] | str | None = None, name: str | None = None,
) -> MultiFieldSplit:
    """A CSV with a label column and one field per image / text column (image paths relative to the file)."""
    return _load_table(split, "csv", path, image_columns, text_columns, label_column, id_column, class_names, mode, size, name)


def load_multifield_jsonl(
    split: str, *, cache_dir: str | os.PathLike[str] | None = None, path: str,
    image_columns: str | Sequence[str] | None = None, text_columns: str | Sequence[str] | None = None,
    label_column: str = "label", id_column: str | None = None, class_names: Sequence[str] | None = None,
    mode: str | None = None, size: int | Sequence[int] | str | None = None, name: str | None = None,
) -> MultiFieldSplit:
    """As `load_multifield_csv`, from JSON lines."""
    return _load_table(split, "jsonl", path, image_columns, text_columns, label_column, id_column, class_names, mode, size, name)


def load_image_captions(
    split: str, *, cache_dir: str | os.PathLike[str] | None = None, path: str, captions: str = "captions.jsonl",
    mode: str | None = None, size: int | Sequence[int] | str | None = None, class_names: Sequence[str] | None = None,
    name: str | None = None,
) -> MultiFieldSplit:
    """``<path>/<split>/<class>/<image>`` with ``<path>/<split>/<captions>`` giving each image's text.

    The captions file (JSON lines or CSV) has columns ``file`` (``<class>/<image>``) and ``text``;
    every image needs exactly one caption. Fields: ``image`` and ``text``; label = class folder.
    """
    root = Path(path) / split
    if not root.is_dir():
        raise DataError(f"no folder {root}; expected <path>/<split>/<class>/<image> and <path>/<split>/{captions}")
    cap_file = root / captions
    if not cap_file.is_file():
        raise DataError(f"no captions file {cap_file}; write one row {{\"file\": \"<class>/<image>\", \"text\": ...}} per image")
    text_of: dict[str, str] = {}
    for lineno, r in read_rows(cap_file):
        if "file" not in r or "text" not in r:
            raise DataError(f"{cap_file}: line {lineno} needs the columns 'file' and 'text'")
        key = str(r["file"]).strip().replace("\\", "/")
        if key in text_of:
            raise DataError(f"{cap_file}: line {lineno}: a second caption for {key!r}; give each image one caption")
        text_of[key] = str(r["text"])
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    names = [str(c) for c in class_names] if class_names is not None else classes
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise DataError(f"class folder {root / unknown[0]} is not one of class_names ({', '.join(names)})")
    files = [(c, f) for c in classes for f in sorted((root / c).iterdir()) if f.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise DataError(f"no images under {root}; expected <class>/<image>.png files")
    keys = [f"{c}/{f.name}" for c, f in files]
    missing = [k for k in keys if k not in text_of]
    if missing:
        raise DataError(f"image {root / missing[0]} has no caption in {cap_file}; add a row for {missing[0]!r}")
    index = {n: i for i, n in enumerate(names)}
    return MultiFieldSplit(
        dataset=name or Path(path).name, split=split, ids=keys,
        inputs=FieldRows({"image": load_images([f for _, f in files], mode, size), "text": [text_of[k] for k in keys]}),
        labels=np.asarray([index[c] for c, _ in files], dtype=np.int64), class_names=names, modality="multi",  # type: ignore[arg-type]
        field_modalities={"image": "image", "text": "text"},
    )


# --- an offline visual-entailment-style task ------------------------------------------------------
VE_CLASSES = ("entailment", "contradiction", "neutral")
_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_CLAIMS = ("the image shows the digit {d}", "this is a handwritten {d}", "a {d} is written here",
           "the number in the picture is {d}")
_NEUTRAL = ("the person who wrote this {d} was in a hurry", "this {d} was written with a blue pen",
            "the writer of this {d} is left-handed", "this {d} was scanned on a monday")


def load_digits_entailment(split: str, *, cache_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> MultiFieldSplit:
    """The bundled 8x8 digits, each paired with one TEMPLATED statement: entailment, contradiction or neutral.

    Entailment: a claim about the image's true digit; contradiction: the same claim templates with
    another digit; neutral: a statement about something the image cannot show (its writer, pen,
    day), naming the true digit. The digit is written as a numeral or a word, at random. Classes are
    drawn uniformly per image (seeded by `seed` and the split). The text side is synthetic: neutral
    is recognisable from the text alone, entailment vs contradiction needs image and text together
    (an interaction of the two fields). It exercises the multimodal machinery, not real language.
    """
    from aft.data.digits import load_digits_split

    base = load_digits_split(split)
    rng = np.random.default_rng([int(seed), 0 if split == "train" else 1])
    labels = rng.integers(0, 3, size=len(base))
    texts = []
    for digit, y in zip(base.labels.tolist(), labels.tolist(), strict=True):
        shown = digit if y != 1 else int((digit + rng.integers(1, 10)) % 10)
        word = _WORDS[shown] if rng.random() < 0.5 else str(shown)
        templates = _NEUTRAL if y == 2 else _CLAIMS
        texts.append(templates[int(rng.integers(0, len(templates)))].format(d=word))
    return MultiFieldSplit(
        dataset="digits-entailment", split=split, ids=[f"{i}:{VE_CLASSES[y][0]}" for i, y in zip(base.ids, labels.tolist(), strict=True)],
        inputs=FieldRows({"image": np.asarray(base.inputs), "text": texts}), labels=labels.astype(np.int64),
        class_names=list(VE_CLASSES), modality="multi", field_modalities={"image": "image", "text": "text"},  # type: ignore[arg-type]
    )


SOURCES = [
    DatasetSource(name="multifield-csv", loader=load_multifield_csv, modality="multi",  # type: ignore[arg-type]
                  description="your multi-field samples in CSV: image_columns=..., text_columns=..., label_column=label"),
    DatasetSource(name="multifield-jsonl", loader=load_multifield_jsonl, modality="multi",  # type: ignore[arg-type]
                  description="your multi-field samples in JSON lines (as multifield-csv)"),
    DatasetSource(name="image-captions", loader=load_image_captions, modality="multi",  # type: ignore[arg-type]
                  description="images <path>/<split>/<class>/<image> + <split>/captions.jsonl: fields image, text"),
    DatasetSource(name="digits-entailment", loader=load_digits_entailment, modality="multi",  # type: ignore[arg-type]
                  description="bundled 8x8 digits + a templated true/false/neutral statement each (3 classes; text is synthetic)",
                  splits=("train", "test"), class_names=VE_CLASSES, sizes={"train": 1438, "test": 359}),
]
for _src in SOURCES:
    register_dataset(_src)

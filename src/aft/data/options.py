"""One vocabulary of dataset options for every command: ``--data-option key=value`` and YAML ``dataset_options:``.

`parse_data_options` turns ``["path=data/{split}.csv", "size=16", "classes=cat,dog"]`` into loader
keyword options; `normalize_options` maps the ``classes=`` alias onto a loader's ``class_names``;
`dataset_label` names the data (``name=`` option, else the file/folder stem) so that records,
run folders and feature stores say ``news``, not ``csv``.

Example:
    >>> parse_data_options(["path=data/{split}.csv", "classes=neg,pos"])
    {'path': 'data/{split}.csv', 'classes': 'neg,pos'}
    >>> dataset_label("csv", {"path": "data/news-{split}.csv"})
    'news'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from aft.errors import ConfigError

#: options that stay strings whatever they look like (paths, names, column names)
STRING_OPTIONS = frozenset({"path", "name", "text_column", "label_column", "id_column", "classes", "mode",
                            "image_column", "image_ext", "text_ext", "label_ext", "builder", "hf_cache"})


def parse_value(key: str, raw: str) -> Any:
    """The value of ``key=raw``: a string for path-like keys, else YAML (``16`` -> int, ``[a, b]`` -> list)."""
    if key in STRING_OPTIONS:
        return raw
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        return raw
    return raw if isinstance(value, dict) else value


def parse_data_options(items: Iterable[str], flag: str = "--data-option") -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{"k": value}``; raises `ConfigError` on an item without ``=``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r} is not KEY=VALUE; e.g. {flag} path=data.csv")
        out[key] = parse_value(key, raw)
    return out


def class_list(value: Any) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (the ``classes=`` option)."""
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        names = [str(v) for v in value]
    else:
        raise ConfigError(f"classes must be a comma-separated string or a list of names, got {value!r}")
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"classes must list distinct class names, got {value!r}; e.g. classes=neg,pos")
    return names


def normalize_options(options: Mapping[str, Any], valid: Iterable[str]) -> dict[str, Any]:
    """`options` with ``classes=`` turned into ``class_names`` (when the loader takes class names)."""
    out = dict(options)
    if "classes" in out and "classes" not in set(valid):
        if "class_names" in out:
            raise ConfigError("give classes= or class_names=, not both")
        out["class_names"] = class_list(out.pop("classes"))
    elif isinstance(out.get("class_names"), str):
        out["class_names"] = class_list(out["class_names"])
    return out


_SEP = re.compile(r"^[-_.\s]+|[-_.\s]+$")
#: brace patterns ({000..009}, {a,b}) and glob characters of shard patterns: not part of a name
_PATTERN = re.compile(r"\{[^{}]*\}|[*?\[\]]")


def _stem(part: str) -> str:
    """A file name's stem without ``{split}``, shard patterns and separators at its ends."""
    stem = Path(part).stem if "." in part else part
    return _SEP.sub("", _PATTERN.sub("", stem.replace("{split}", "")))


def path_label(path: str | Path) -> str:
    """The name a `path` option gives its data: a folder's name, a file's stem, or a split
    template's stem without ``{split}`` (``data/news-{split}.csv`` -> ``news``; ``data/{split}.csv`` -> ``data``)."""
    text = str(path).rstrip("/\\")
    if "{split}" in text:
        p = Path(text)
        # the part of the template below the first folder holding {split}
        parts = list(p.parts)
        k = next(i for i, part in enumerate(parts) if "{split}" in part)
        if k < len(parts) - 1:  # the split is a folder: data/{split}/x.csv -> data
            stem = ""
        else:
            stem = _stem(parts[k])
        if stem:
            return stem
        parent = Path(*parts[:k]) if k else Path.cwd()
        return parent.resolve().name or "data"
    p = Path(text)
    if p.is_dir() or not p.suffix:
        return p.resolve().name or "data"
    if _PATTERN.search(p.name):  # a shard pattern: shards/train-*.tar -> train
        return _stem(p.name) or p.parent.resolve().name or "data"
    return p.stem


def dataset_label(name: str, options: Mapping[str, Any] | None = None) -> str:
    """What to call dataset `name` loaded with `options` in records, run folders and stores: the
    ``name=`` option, else (generic sources) the stem of the ``path=`` option, else `name`."""
    opts = dict(options or {})
    if opts.get("name"):
        return str(opts["name"])
    if opts.get("path") is not None and name in GENERIC_SOURCES:
        return path_label(opts["path"])
    return name


#: sources whose data (and name) come from the ``path`` option
GENERIC_SOURCES = frozenset({"csv", "jsonl", "imagefolder", "parquet", "hf", "webdataset"})

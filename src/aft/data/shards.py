"""Which files a split reads when it may span several shards (Parquet files, WebDataset tars).

The `path` option of the sharded loaders (`parquet`, `webdataset`) is one of:

* a folder: ``<path>/<split>.<ext>``, else the shards ``<path>/<split>-*.<ext>`` (the Hugging Face
  Hub layout ``train-00000-of-00004.parquet``), else ``<path>/<split>/*.<ext>``;
* a template containing ``{split}``, with glob (``*``) or brace patterns
  (``shards/{split}-{000000..000099}.tar``, ``data/{split}-*.parquet``);
* a file, a glob or a brace pattern without ``{split}``: read as is whatever the split name.

Brace patterns are the WebDataset ones: ``{000..099}`` (a zero-padded integer range) and
``{a,b,c}`` (alternatives). Files are sorted, so the sample order (and the default ids) is stable.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from aft.errors import ConfigError, DataError

#: the most names one brace pattern may expand to (a typo like {0..99999999} is refused)
MAX_EXPANDED = 1_000_000

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


def expand_braces(pattern: str) -> list[str]:
    """``"s-{00..02}.tar"`` -> ``["s-00.tar", "s-01.tar", "s-02.tar"]``; ``{a,b}`` gives both; other
    braces stay literal. Raises `ConfigError` on a reversed or too large range."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    body, head, tail = m.group(1), pattern[: m.start()], pattern[m.end():]
    rng = _RANGE.match(body)
    if rng:
        lo, hi = int(rng.group(1)), int(rng.group(2))
        if hi < lo or hi - lo >= MAX_EXPANDED:
            raise ConfigError(f"brace range {{{body}}} in {pattern!r} is reversed or expands to over "
                              f"{MAX_EXPANDED} names; write {{first..last}} with first <= last")
        width = len(rng.group(1)) if len(rng.group(1)) == len(rng.group(2)) else 0
        items = [str(i).zfill(width) for i in range(lo, hi + 1)]
    elif "," in body:
        items = body.split(",")
    else:
        return [head + "{" + body + "}" + rest for rest in expand_braces(tail)]
    rests = expand_braces(tail)
    if len(items) * len(rests) > MAX_EXPANDED:
        raise ConfigError(f"{pattern!r} expands to over {MAX_EXPANDED} names; use fewer shards or a glob (*)")
    return [head + item + rest for item in items for rest in rests]


def _matches(pattern: str) -> list[Path]:
    """The existing files a glob/brace pattern names, sorted (a plain name: itself if it is a file)."""
    out: set[str] = set()
    for name in expand_braces(pattern):
        if glob.has_magic(name):
            out.update(p for p in glob.glob(name) if os.path.isfile(p))
        elif os.path.isfile(name):
            out.add(name)
    return sorted(Path(p) for p in out)


def resolve_split_files(path: str | os.PathLike[str], split: str, ext: str) -> list[Path]:
    """The files split `split` reads for the `path` option (see the module docstring), sorted.

    Raises `DataError` naming what is missing (and what is there) or an empty file.
    """
    spath = str(path)
    if "{split}" in spath:
        pattern = spath.replace("{split}", split)
        files = _matches(pattern)
        if not files:
            raise DataError(f"no file matches {pattern} (split {split!r} of {spath}); check the path option")
    elif Path(spath).is_dir():
        root = Path(spath)
        files = [root / f"{split}.{ext}"] if (root / f"{split}.{ext}").is_file() else []
        files = files or sorted(p for p in root.glob(f"{glob.escape(split)}-*.{ext}") if p.is_file())
        files = files or sorted(p for p in (root / split).glob(f"*.{ext}") if p.is_file())
        if not files:
            present = sorted(p.name for p in root.glob(f"*.{ext}")) + sorted(
                p.name + "/" for p in root.iterdir() if p.is_dir())
            raise DataError(
                f"no {split}.{ext}, {split}-*.{ext} or {split}/*.{ext} in {spath} (present: "
                f"{', '.join(present[:10]) or 'none'}); name the split files so, or pass a {{split}} template"
            )
    else:
        files = _matches(spath)
        if not files:
            raise DataError(f"data file {spath} not found; check the path option")
    for f in files:
        if f.stat().st_size == 0:
            raise DataError(f"data file {f} is empty; remove it or write the split again")
    return files


def all_split_files(path: str | os.PathLike[str], ext: str) -> list[Path]:
    """Every split's files of the `path` option (a folder's ``*.<ext>`` and ``*/*.<ext>``, a
    template's matches for any split; a plain file or pattern: none besides itself), so that class
    names are inferred from all splits at once."""
    spath = str(path)
    if "{split}" in spath:
        return _matches(spath.replace("{split}", "*"))
    if Path(spath).is_dir():
        root = Path(spath)
        return sorted(p for p in [*root.glob(f"*.{ext}"), *root.glob(f"*/*.{ext}")] if p.is_file())
    return []

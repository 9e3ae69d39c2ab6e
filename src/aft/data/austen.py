"""Jane Austen's six novels as a 6-class text task (which novel is this passage from?).

Source: Debian's ``r-cran-janeaustenr`` (the ``austen`` asset), whose data sets live in R's
lazy-load database ``Rdata.rdb`` + ``Rdata.rdx``. The ``.rdx`` is an RDS object (read with the
PyPI package ``rdata``) mapping each data set to ``(offset, length)`` in the ``.rdb``; each entry
there is a 4-byte big-endian uncompressed length followed by a zlib stream of one serialized
RDS object, here a character vector holding one line of the novel per element.

A passage is 4 consecutive non-empty lines (stripped, joined by spaces); an incomplete last group
is dropped and passages with fewer than `MIN_WORDS` whitespace-separated words (chapter titles,
headers) are left out: 15,349 passages. The sample id is ``<novel>/<n>``, ``n`` the 0-based
index (5 digits) of the passage's first line in the novel's line vector. The test ids of split
``v1`` (20 % of each novel, seed 20240602) are committed in ``aft/data/splits/austen_v1.json``.
"""

from __future__ import annotations

import json
import os
import warnings
import zlib
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from aft.data.sampling import stratified_indices
from aft.data.split import DatasetSplit
from aft.errors import ConfigError, DataError

#: the novels in publication order: (data-set name in the R package, class name)
NOVELS = (
    ("sensesensibility", "Sense & Sensibility"),
    ("prideprejudice", "Pride & Prejudice"),
    ("mansfieldpark", "Mansfield Park"),
    ("emma", "Emma"),
    ("northangerabbey", "Northanger Abbey"),
    ("persuasion", "Persuasion"),
)
CLASS_NAMES = tuple(title for _, title in NOVELS)
LINES_PER_PASSAGE = 4
MIN_WORDS = 30
SPLIT_FILES = {"v1": "austen_v1.json"}
_REFETCH = "fetch it again with `aft assets fetch --force austen`"
_NEEDS_RDATA = "reading the Jane Austen data needs the `rdata` package: pip install 'aft[data]' (or rdata)"


def _rdata():  # type: ignore[no-untyped-def]
    try:
        import rdata
    except ImportError:
        raise DataError(_NEEDS_RDATA) from None
    return rdata


def _parse_rds(data: bytes, what: str) -> object:
    rdata = _rdata()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Unknown file type: assumed RDS" and similar
            return rdata.conversion.convert(rdata.parser.parse_data(data))
    except Exception as exc:  # rdata raises plain ValueError/NotImplementedError/... on bad input
        raise DataError(f"{what} is not a readable R object ({type(exc).__name__}: {exc!s:.60}); {_REFETCH}") from None


def read_lazyload_db(folder: str | Path, stem: str = "Rdata") -> dict[str, object]:
    """Every object of the R lazy-load database ``<folder>/<stem>.rdb/.rdx``, by name (converted by rdata)."""
    folder = Path(folder)
    rdx, rdb = folder / f"{stem}.rdx", folder / f"{stem}.rdb"
    if not rdx.is_file() or not rdb.is_file():
        raise DataError(f"no R lazy-load database {stem}.rdb/.rdx in {folder}; {_REFETCH}")
    index = _parse_rds(rdx.read_bytes(), str(rdx))
    if not isinstance(index, dict) or not isinstance(index.get("variables"), dict):
        raise DataError(f"{rdx} is not a lazy-load index (no 'variables'); {_REFETCH}")
    compressed = index.get("compressed", True)
    if not bool(np.asarray(compressed).ravel()[0]) or np.asarray(compressed).dtype.kind != "b":
        raise DataError(f"{rdx}: only zlib-compressed lazy-load databases are supported; {_REFETCH}")
    raw = rdb.read_bytes()
    out: dict[str, object] = {}
    for name, entry in index["variables"].items():
        offset, length = (int(v) for v in np.asarray(entry).ravel()[:2])
        blob = raw[offset: offset + length]
        if len(blob) != length or length < 5:
            raise DataError(f"{rdb}: entry {name!s} lies outside the file (truncated?); {_REFETCH}")
        try:
            data = zlib.decompress(blob[4:])
        except zlib.error:
            raise DataError(f"{rdb}: entry {name!s} is not a zlib stream (corrupted?); {_REFETCH}") from None
        if len(data) != int.from_bytes(blob[:4], "big"):
            raise DataError(f"{rdb}: entry {name!s} has the wrong uncompressed length; {_REFETCH}")
        out[str(name)] = _parse_rds(data, f"{rdb} entry {name!s}")
    return out


def make_passages(lines: list[str], min_words: int = MIN_WORDS) -> list[tuple[int, str]]:
    """``(first line index, passage)`` for each group of 4 consecutive non-empty lines with >= `min_words` words."""
    kept = [(i, s.strip()) for i, s in enumerate(lines) if s.strip()]
    out = []
    for start in range(0, len(kept) - LINES_PER_PASSAGE + 1, LINES_PER_PASSAGE):
        group = kept[start: start + LINES_PER_PASSAGE]
        text = " ".join(s for _, s in group)
        if len(text.split()) >= min_words:
            out.append((group[0][0], text))
    return out


@lru_cache(maxsize=2)
def _read_corpus_cached(folder: str, stamp: tuple[int, ...]) -> tuple[tuple[str, int, str], ...]:
    objects = read_lazyload_db(folder)
    rows = []
    for label, (key, _) in enumerate(NOVELS):
        vec = objects.get(key)
        if vec is None or not isinstance(vec, np.ndarray) or vec.dtype.kind not in "UO":
            raise DataError(f"{folder}: the lazy-load database has no text vector {key!r}; {_REFETCH}")
        lines = ["" if s is None else str(s) for s in vec.tolist()]
        rows.extend((f"{key}/{i:05d}", label, text) for i, text in make_passages(lines))
    return tuple(rows)


def read_corpus(folder: str | Path) -> list[tuple[str, int, str]]:
    """``(sample_id, label, passage)`` for every passage of the six novels, novels in class order."""
    folder = Path(folder)
    try:
        stamp = tuple(int(v) for f in ("Rdata.rdb", "Rdata.rdx") for v in (
            (folder / f).stat().st_size, (folder / f).stat().st_mtime_ns))
    except OSError:
        raise DataError(f"no R lazy-load database Rdata.rdb/.rdx in {folder}; {_REFETCH}") from None
    return list(_read_corpus_cached(str(folder.absolute()), stamp))


def make_split(ids: list[str], labels: list[int] | np.ndarray, seed: int = 20240602,
               test_fraction: float = 0.2) -> list[str]:
    """The sorted test ids of a split stratified by novel (how ``austen_v1.json`` was made)."""
    codes = np.asarray(labels, dtype=np.int64)
    test = stratified_indices(codes, int(round(test_fraction * len(ids))), seed)
    return sorted(ids[i] for i in test)


def read_split_file(version: str = "v1") -> dict:
    """The committed split record (``test_ids``, seed, counts...) of `version`."""
    if version not in SPLIT_FILES:
        raise ConfigError(f"unknown Jane Austen split version {version!r}; valid: {', '.join(SPLIT_FILES)}")
    raw = resources.files("aft.data").joinpath("splits", SPLIT_FILES[version]).read_text(encoding="utf-8")
    return json.loads(raw)


def load_austen(
    split: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    split_version: str = "v1",
    path: str | None = None,
) -> DatasetSplit:
    """Load Jane Austen `split` ("train": 12,279 passages, "test": 3,070); label = which novel.

    Args:
        split: ``"train"`` or ``"test"`` of the committed split.
        cache_dir: asset cache (the ``austen`` asset is fetched there when missing).
        split_version: which committed split to use (``"v1"``).
        path: a folder holding ``Rdata.rdb`` and ``Rdata.rdx``, instead of the asset.
    """
    if path is None:
        from aft.assets import ensure

        folder = ensure("austen", cache_dir)
    else:
        folder = Path(path)
    record = read_split_file(split_version)
    corpus = read_corpus(folder)
    test_ids = set(record["test_ids"])
    missing = test_ids - {sid for sid, _, _ in corpus}
    if missing or len(corpus) != record["num_samples"]:
        raise DataError(
            f"the Jane Austen corpus in {folder} ({len(corpus)} passages) does not match split "
            f"{split_version} ({record['num_samples']} passages, e.g. missing {sorted(missing)[:1]}); {_REFETCH}"
        )
    want_test = split == "test"
    rows = [r for r in corpus if (r[0] in test_ids) == want_test]
    return DatasetSplit(
        dataset="austen",
        split=split,
        ids=[sid for sid, _, _ in rows],
        inputs=[text for _, _, text in rows],
        labels=np.array([label for _, label, _ in rows], dtype=np.int64),
        class_names=list(CLASS_NAMES),
        modality="text",
    )

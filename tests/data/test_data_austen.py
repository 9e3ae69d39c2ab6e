"""Jane Austen: the real asset gives 15,349 passages of 6 novels, a stable committed split, clear errors."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from aft.data import dataset_info, load_split
from aft.data.austen import (
    CLASS_NAMES,
    MIN_WORDS,
    NOVELS,
    make_passages,
    make_split,
    read_corpus,
    read_lazyload_db,
    read_split_file,
)
from aft.errors import DataError

pytest.importorskip("rdata")

#: passages per novel (4 non-empty lines, >= 30 words), counted independently of the loader
PER_NOVEL = {"sensesensibility": 2595, "prideprejudice": 2637, "mansfieldpark": 3325, "emma": 3372,
             "northangerabbey": 1632, "persuasion": 1788}
#: lines per novel in janeaustenr 1.0.0 (73,422 in all, as `austen_books()` in R)
LINES = {"emma": 16235, "mansfieldpark": 15349, "northangerabbey": 7856, "persuasion": 8328,
         "prideprejudice": 13030, "sensesensibility": 12624}


@pytest.fixture(scope="module")
def loads(real_asset):  # type: ignore[no-untyped-def]
    real_asset("austen")
    first = {s: load_split("austen", s) for s in ("train", "test")}
    second = {s: load_split("austen", s) for s in ("train", "test")}
    return first, second


@pytest.mark.assets
def test_lazyload_database_holds_the_six_novels_line_by_line(real_asset) -> None:  # type: ignore[no-untyped-def]
    objects = read_lazyload_db(real_asset("austen"))
    assert {k: len(v) for k, v in objects.items()} == LINES  # type: ignore[arg-type]
    pride = [str(s) for s in objects["prideprejudice"]]  # type: ignore[union-attr]
    assert pride[0] == "PRIDE AND PREJUDICE"
    assert pride[9].startswith("It is a truth universally acknowledged, that a single man")


@pytest.mark.assets
def test_counts_classes_and_passage_rule(loads, real_asset) -> None:  # type: ignore[no-untyped-def]
    first, _ = loads
    train, test = first["train"], first["test"]
    assert (len(train), len(test)) == (12279, 3070)
    assert len(train) + len(test) == 15349 == sum(PER_NOVEL.values())
    assert train.class_names == list(CLASS_NAMES) and train.num_classes == 6
    ids = train.ids + test.ids
    labels = np.concatenate([train.labels, test.labels])
    assert Counter(i.split("/")[0] for i in ids) == PER_NOVEL
    keys = [k for k, _ in NOVELS]
    np.testing.assert_array_equal(labels, [keys.index(i.split("/")[0]) for i in ids])
    assert all(len(t.split()) >= MIN_WORDS for t in train.inputs + test.inputs)
    # the passage of an id starts with the line its id names (independent re-reading of the lines)
    lines = read_lazyload_db(real_asset("austen"))
    for sid, text in list(zip(test.ids, test.inputs, strict=True))[::500]:
        novel, n = sid.split("/")
        assert text.startswith(str(lines[novel][int(n)]).strip())  # type: ignore[index]
    info = dataset_info("austen")
    assert info.sizes == {"train": 12279, "test": 3070} and info.asset == "austen"


@pytest.mark.assets
def test_split_is_deterministic_stratified_and_matches_the_committed_ids(loads) -> None:  # type: ignore[no-untyped-def]
    first, second = loads
    for s in ("train", "test"):
        assert first[s].ids == second[s].ids
        assert first[s].fingerprint() == second[s].fingerprint()
    record = read_split_file("v1")
    assert sorted(first["test"].ids) == record["test_ids"]
    assert (record["num_train"], record["num_test"], record["num_samples"]) == (12279, 3070, 15349)
    assert not set(first["train"].ids) & set(first["test"].ids)
    test_novels = Counter(i.split("/")[0] for i in first["test"].ids)
    for novel, n in PER_NOVEL.items():
        assert abs(test_novels[novel] - 0.2 * n) <= 1, novel


@pytest.mark.assets
def test_committed_split_is_reproduced_by_its_recorded_recipe(real_asset) -> None:  # type: ignore[no-untyped-def]
    corpus = read_corpus(real_asset("austen"))
    record = read_split_file("v1")
    ids, labels = [r[0] for r in corpus], [r[1] for r in corpus]
    assert make_split(ids, labels, seed=record["seed"], test_fraction=record["test_fraction"]) == record["test_ids"]
    assert make_split(ids, labels, seed=record["seed"] + 1) != record["test_ids"]


def test_make_passages_groups_four_non_empty_lines_and_drops_short_and_incomplete_ones() -> None:
    words = " ".join(["w"] * 8)
    lines = ["TITLE", "", words, words, "", words, words, words, words, "", words, words]
    # non-empty lines: 0, 2, 3, 5 | 6, 7, 8, 10 | 11 (incomplete group dropped)
    got = make_passages(lines, min_words=30)
    assert got == [(6, " ".join([words] * 4))]  # the first group has 1 + 24 words < 30
    assert [i for i, _ in make_passages(lines, min_words=1)] == [0, 6]


def _copy_db(real_asset, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "db"
    shutil.copytree(real_asset("austen"), folder)
    return folder


@pytest.mark.assets
def test_corrupted_or_missing_database_gives_one_line_data_errors(real_asset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="no R lazy-load database .*aft assets fetch --force austen"):
        load_split("austen", "train", path=str(tmp_path))
    folder = _copy_db(real_asset, tmp_path)
    rdb = folder / "Rdata.rdb"
    data = bytearray(rdb.read_bytes())
    data[10:20] = b"\x00" * 10  # inside the first zlib stream
    rdb.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"entry emma .*(zlib|length|readable)") as info:
        read_lazyload_db(folder)
    assert "\n" not in str(info.value)
    rdb.write_bytes(bytes(data[:1000]))
    with pytest.raises(DataError, match="outside the file"):
        read_lazyload_db(folder)
    (folder / "Rdata.rdx").write_bytes(gzip.compress(b"not an RDS object"))
    with pytest.raises(DataError, match="Rdata.rdx is not a readable R object"):
        read_lazyload_db(folder)


@pytest.mark.assets
def test_a_different_corpus_is_refused_against_the_committed_split(real_asset, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import aft.data.austen as austen

    corpus = read_corpus(real_asset("austen"))
    monkeypatch.setattr(austen, "read_corpus", lambda folder: corpus[1:])
    with pytest.raises(DataError, match=r"15348 passages\) does not match split v1 \(15349 passages"):
        load_split("austen", "test")

"""SpamAssassin: the committed split is stable, stratified, and what the loader returns."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from aft.data import load_split
from aft.data.spam_assassin import make_split, read_corpus, read_split_file, strip_email_headers

GROUP_SIZES = {"easy-ham-1": 2500, "easy-ham-2": 1400, "hard-ham-1": 250, "spam-1": 500, "spam-2": 1396}


@pytest.fixture(scope="module")
def loads(real_asset):  # type: ignore[no-untyped-def]
    real_asset("spam-assassin")
    first = {s: load_split("spam-assassin", s) for s in ("train", "test")}
    second = {s: load_split("spam-assassin", s) for s in ("train", "test")}
    return first, second


def test_split_is_identical_across_loads_and_matches_the_committed_ids(loads) -> None:  # type: ignore[no-untyped-def]
    first, second = loads
    for s in ("train", "test"):
        assert first[s].ids == second[s].ids
        assert first[s].fingerprint() == second[s].fingerprint()
    record = read_split_file("v1")
    assert sorted(first["test"].ids) == record["test_ids"]
    assert len(first["train"]) == record["num_train"] == 4837
    assert len(first["test"]) == record["num_test"] == 1209
    assert not set(first["train"].ids) & set(first["test"].ids)


def test_split_is_stratified_by_group_and_label(loads) -> None:  # type: ignore[no-untyped-def]
    first, _ = loads
    test_groups = Counter(i.split("/")[0] for i in first["test"].ids)
    for group, n in GROUP_SIZES.items():
        assert abs(test_groups[group] - 0.2 * n) <= 1, group
    frac = {s: first[s].labels.mean() for s in ("train", "test")}
    assert abs(frac["train"] - frac["test"]) < 0.01
    assert first["test"].class_names == ["ham", "spam"]
    spam = np.array([i.startswith("spam") for i in first["test"].ids])
    np.testing.assert_array_equal(first["test"].labels, spam.astype(np.int64))


def test_committed_split_is_reproduced_by_its_recorded_recipe(real_asset) -> None:  # type: ignore[no-untyped-def]
    corpus = read_corpus(real_asset("spam-assassin"))
    record = read_split_file("v1")
    ids, groups = [r[0] for r in corpus], [r[1] for r in corpus]
    assert make_split(ids, groups, seed=record["seed"], test_fraction=record["test_fraction"]) == record["test_ids"]


def test_headers_are_stripped_by_default_and_kept_on_request(loads, real_asset) -> None:  # type: ignore[no-untyped-def]
    first, _ = loads
    raw = load_split("spam-assassin", "test", strip_headers=False)
    assert raw.ids == first["test"].ids
    assert sum(t.startswith("From ") or "Received:" in t for t in raw.inputs) > 1000
    assert not any("\nReceived: from" in t[:2000] and "\nReturn-Path:" in t[:2000] for t in first["test"].inputs)
    assert all(t.strip() for t in first["test"].inputs)


def test_strip_email_headers() -> None:
    email = "From a@b  Mon\r\nReceived: x\r\nSubject: Hello\r\n  world\r\nTo: c\r\n\r\nBody line\r\n\r\nmore\r\n"
    assert strip_email_headers(email) == "Hello world\n\nBody line\n\nmore"
    assert strip_email_headers(email, keep_subject=False) == "Body line\n\nmore"
    assert strip_email_headers("Subject: only\n\n") == "only"
    assert strip_email_headers("no header block") == "no header block"

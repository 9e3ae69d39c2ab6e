"""The SpamAssassin public corpus with a fixed, committed, stratified train/test split.

Sample ids are ``<group>/<id>`` (e.g. ``spam-1/00001``). The test ids of split version ``v1``
are recorded in ``aft/data/splits/spam_assassin_v1.json`` (20% of each group, seed 20240601),
so the split never changes between versions of aft. Texts are raw emails; by default the
headers are removed and the subject kept as the first line (``strip_headers``/``keep_subject``).
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

import numpy as np

from aft.data.sampling import stratified_indices
from aft.data.split import DatasetSplit
from aft.errors import ConfigError, DataError

CLASS_NAMES = ("ham", "spam")
GROUPS = ("easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2")
SPLIT_FILES = {"v1": "spam_assassin_v1.json"}
_REFETCH = "fetch it again with `aft assets fetch --force spam-assassin`"


def read_corpus(folder: str | Path) -> list[tuple[str, str, str]]:
    """``(sample_id, group, raw_text)`` for every email under `folder/<group>/*.json`, sorted by id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"SpamAssassin folder {folder} not found; {_REFETCH}")
    out = []
    for group_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for f in sorted(group_dir.glob("*.json")):
            try:
                rec = json.loads(f.read_text(encoding="utf-8"))
                sid = f"{rec['group']}/{rec['id']}"
                text = rec["text"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(f"SpamAssassin file {f} is malformed ({exc!s:.80}); {_REFETCH}") from None
            if rec["group"] != group_dir.name or not isinstance(text, str):
                raise DataError(f"SpamAssassin file {f} does not belong to group {group_dir.name}; {_REFETCH}")
            out.append((sid, rec["group"], text))
    if not out:
        raise DataError(f"no SpamAssassin emails under {folder}; {_REFETCH}")
    out.sort(key=lambda r: r[0])
    return out


_SUBJECT = re.compile(r"^subject:[ \t]*(.*)$", re.IGNORECASE)


def strip_email_headers(text: str, keep_subject: bool = True) -> str:
    """The body of a raw email (headers removed), preceded by the subject line when `keep_subject`.

    Headers end at the first empty line; a folded subject (continuation lines starting with
    white space) is joined. MIME parts and encodings in the body are left as they are. Returns
    the subject alone when the body is empty, and the raw text when there is no header block.
    """
    text = text.replace("\r\n", "\n")
    head, sep, body = text.partition("\n\n")
    if not sep:
        return text
    subject = None
    lines = head.split("\n")
    for i, line in enumerate(lines):
        m = _SUBJECT.match(line)
        if m:
            parts = [m.group(1).strip()]
            for cont in lines[i + 1:]:
                if cont[:1] in (" ", "\t"):
                    parts.append(cont.strip())
                else:
                    break
            subject = " ".join(p for p in parts if p)
            break
    body = body.strip("\n")
    if keep_subject and subject:
        return f"{subject}\n\n{body}" if body else subject
    return body or (subject or text)


def make_split(ids: list[str], groups: list[str], seed: int = 20240601, test_fraction: float = 0.2) -> list[str]:
    """The sorted test ids of a stratified-by-group split (how ``spam_assassin_v1.json`` was made)."""
    codes = np.array([GROUPS.index(g) if g in GROUPS else len(GROUPS) for g in groups], dtype=np.int64)
    test = stratified_indices(codes, int(round(test_fraction * len(ids))), seed)
    return sorted(ids[i] for i in test)


def read_split_file(version: str = "v1") -> dict:
    """The committed split record (``test_ids``, seed, counts...) of `version`."""
    if version not in SPLIT_FILES:
        raise ConfigError(f"unknown SpamAssassin split version {version!r}; valid: {', '.join(SPLIT_FILES)}")
    raw = resources.files("aft.data").joinpath("splits", SPLIT_FILES[version]).read_text(encoding="utf-8")
    return json.loads(raw)


def load_spam_assassin(
    split: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    strip_headers: bool = True,
    keep_subject: bool = True,
    split_version: str = "v1",
    path: str | None = None,
) -> DatasetSplit:
    """Load SpamAssassin `split` ("train" or "test"); labels ham=0, spam=1.

    Args:
        split: ``"train"`` (4,837 emails) or ``"test"`` (1,209 emails) of the committed split.
        cache_dir: asset cache (the ``spam-assassin`` asset is fetched there when missing).
        strip_headers: remove the email headers (default); False keeps the raw email.
        keep_subject: with `strip_headers`, keep the subject as the first line (default).
        split_version: which committed split to use (``"v1"``).
        path: a folder holding the group folders, instead of the asset.
    """
    if path is None:
        from aft.assets import ensure

        folder = ensure("spam-assassin", cache_dir)
    else:
        folder = Path(path)
    record = read_split_file(split_version)
    corpus = read_corpus(folder)
    test_ids = set(record["test_ids"])
    known = {sid for sid, _, _ in corpus}
    missing = test_ids - known
    if missing or len(corpus) != record["num_samples"]:
        raise DataError(
            f"the SpamAssassin corpus in {folder} ({len(corpus)} emails) does not match split "
            f"{split_version} ({record['num_samples']} emails, e.g. missing {sorted(missing)[:1]}); {_REFETCH}"
        )
    want_test = split == "test"
    rows = [r for r in corpus if (r[0] in test_ids) == want_test]
    texts = [strip_email_headers(t, keep_subject) if strip_headers else t for _, _, t in rows]
    return DatasetSplit(
        dataset="spam-assassin",
        split=split,
        ids=[sid for sid, _, _ in rows],
        inputs=texts,
        labels=np.array([1 if g.startswith("spam") else 0 for _, g, _ in rows], dtype=np.int64),
        class_names=list(CLASS_NAMES),
        modality="text",
    )

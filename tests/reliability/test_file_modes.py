"""Files aft writes get the permissions ``open()`` would give them (``0o666 & ~umask``), not mkstemp's
0600, so a store or run folder shared with other users stays readable (issue 14, item 9)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aft.atomic_io import atomic_write_bytes, atomic_write_json, current_umask, umask_mode


@pytest.fixture
def umask() -> Iterator[int]:
    old = os.umask(0o022)
    try:
        yield 0o022
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_umask_is_read_without_changing_it(umask):
    assert current_umask() == 0o022 and umask_mode() == 0o644 and umask_mode(0o777) == 0o755
    assert current_umask() == 0o022
    os.umask(0o027)
    assert umask_mode() == 0o640


def test_atomic_writes_are_0644_under_umask_022(tmp_path, umask):
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_json(tmp_path / "b.json", {"a": 1})
    assert mode(tmp_path / "a.bin") == mode(tmp_path / "b.json") == 0o644
    (tmp_path / "plain").write_text("x")  # what open() gives, for reference
    assert mode(tmp_path / "plain") == 0o644
    os.umask(0o077)
    atomic_write_bytes(tmp_path / "private.bin", b"x")
    assert mode(tmp_path / "private.bin") == 0o600  # a stricter umask is respected too


def test_store_run_and_asset_files_are_readable_by_others(tmp_path, umask, monkeypatch):
    import hashlib

    import aft.assets.core as core
    from aft.data.split import DatasetSplit
    from aft.features import extract
    from aft.registry import Registry
    from aft.students.base import build_student
    from aft.students.io import save_student
    from aft.teachers import CallableTeacher

    rng = np.random.default_rng(0)
    split = DatasetSplit("toy", "train", [f"s{i}" for i in range(6)], rng.integers(0, 255, (6, 8, 8), dtype=np.uint8),
                         rng.integers(0, 2, 6), ["a", "b"], "image")
    teacher = CallableTeacher(lambda x: x.reshape(len(x), -1)[:, :4].astype(np.float32), dim=4, modality="image")
    (store,) = extract(teacher, split, tmp_path / "store", progress=False)
    save_student(build_student("cnn-small", 2, image_size=8, width=4), tmp_path / "run")

    payload = b"w" * 100
    pin = core.tree_digest({"w.bin": {"size": 100, "sha256": hashlib.sha256(payload).hexdigest()}})
    reg: Registry[core.AssetSpec] = Registry("asset")
    reg.add("fake", core.AssetSpec("fake", "fake", "fake", lambda d, p: (d / "w.bin").write_bytes(payload),
                                   result="w.bin", tree_sha256=pin))
    monkeypatch.setattr(core, "ASSETS", reg)
    monkeypatch.setattr(core, "_CATALOG_LOADED", True)
    core.fetch("fake", tmp_path / "cache", progress=False)

    written = [p for root in (store, tmp_path / "run", tmp_path / "cache") for p in root.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {"manifest.json", "ids.json", "student.safetensors", "student.json", core.MANIFEST_NAME} <= names
    bad = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in written if mode(p) != 0o644}
    assert not bad, f"files not 0644 under umask 022: {bad}"
    assert mode(tmp_path / "cache" / "fake") == 0o755

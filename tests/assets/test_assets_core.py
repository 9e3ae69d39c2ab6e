"""Fetch behaviour of `aft.assets.core` with fake sources: idempotence, atomicity, verification."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

import aft.assets.core as core
from aft.assets import asset_status, cache_dir, ensure, fetch, list_assets
from aft.errors import AssetError, UnknownNameError
from aft.registry import Registry

PAYLOAD = {"a.bin": b"A" * 1000, "sub/b.txt": b"hello world\n"}


def _files_digest(files: dict[str, bytes]) -> str:
    entries = {k: {"size": len(v), "sha256": __import__("hashlib").sha256(v).hexdigest()} for k, v in files.items()}
    return core.tree_digest(entries)


class FakeSource:
    """A builder that writes PAYLOAD and counts its calls; can be told to fail midway."""

    def __init__(self, payload: dict[str, bytes] = PAYLOAD, fail: bool = False) -> None:
        self.payload = payload
        self.calls = 0
        self.fail = fail

    def __call__(self, dest: Path, progress: bool) -> None:
        self.calls += 1
        for rel, data in self.payload.items():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(data)
            if self.fail:
                raise AssetError("source unreachable (fake); check the network")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSource:
    src = FakeSource()
    reg: Registry[core.AssetSpec] = Registry("asset")
    reg.add("fake", core.AssetSpec("fake", "a fake asset", "fake", src, result="a.bin", tree_sha256=_files_digest(PAYLOAD)))
    monkeypatch.setattr(core, "ASSETS", reg)
    monkeypatch.setattr(core, "_CATALOG_LOADED", True)
    return src


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AFT_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "aft"
    monkeypatch.setenv("AFT_CACHE_DIR", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_fetch_writes_manifest_and_returns_result(fake: FakeSource, tmp_path: Path) -> None:
    path = fetch("fake", tmp_path, progress=False)
    assert path == tmp_path / "fake" / "a.bin"
    assert path.read_bytes() == PAYLOAD["a.bin"]
    manifest = json.loads((tmp_path / "fake" / core.MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == set(PAYLOAD)
    assert manifest["tree_sha256"] == _files_digest(PAYLOAD)
    assert manifest["total_bytes"] == sum(len(v) for v in PAYLOAD.values())
    # nothing left behind but the asset, its lock and the memo of its file digests
    assert sorted(p.name for p in tmp_path.iterdir()) == [".fake.lock", ".fake.sha256.json", "fake"]


def test_second_fetch_does_nothing(fake: FakeSource, tmp_path: Path) -> None:
    fetch("fake", tmp_path, progress=False)
    mtime = (tmp_path / "fake" / "a.bin").stat().st_mtime_ns
    fetch("fake", tmp_path, progress=False)
    ensure("fake", tmp_path)
    assert fake.calls == 1
    assert (tmp_path / "fake" / "a.bin").stat().st_mtime_ns == mtime
    fetch("fake", tmp_path, force=True, progress=False)
    assert fake.calls == 2


def test_truncated_file_is_detected_and_refetched(fake: FakeSource, tmp_path: Path) -> None:
    fetch("fake", tmp_path, progress=False)
    target = tmp_path / "fake" / "a.bin"
    with open(target, "r+b") as fh:
        fh.truncate(10)
    st = asset_status("fake", tmp_path)
    assert not st.present and "truncated" in st.reason
    assert ensure("fake", tmp_path) == target
    assert fake.calls == 2
    assert target.read_bytes() == PAYLOAD["a.bin"]


def test_same_size_corruption_is_refused_on_use_and_fixed_by_fetch(fake: FakeSource, tmp_path: Path) -> None:
    fetch("fake", tmp_path, progress=False)
    target = tmp_path / "fake" / "a.bin"
    target.write_bytes(b"B" * 1000)
    assert asset_status("fake", tmp_path).present  # the cheap status check only compares sizes
    with pytest.raises(AssetError, match=r"a\.bin has the wrong sha256 .*aft assets fetch --force fake"):
        ensure("fake", tmp_path)  # but a use verifies the content: refused, never used silently
    assert fake.calls == 1
    assert not asset_status("fake", tmp_path, full=True).present
    fetch("fake", tmp_path, progress=False)
    assert fake.calls == 2 and target.read_bytes() == PAYLOAD["a.bin"]


def test_missing_file_or_manifest_is_refetched(fake: FakeSource, tmp_path: Path) -> None:
    fetch("fake", tmp_path, progress=False)
    (tmp_path / "fake" / "sub" / "b.txt").unlink()
    ensure("fake", tmp_path)
    assert fake.calls == 2
    (tmp_path / "fake" / core.MANIFEST_NAME).unlink()
    ensure("fake", tmp_path)
    assert fake.calls == 3


def test_failed_fetch_leaves_no_asset(fake: FakeSource, tmp_path: Path) -> None:
    fake.fail = True
    with pytest.raises(AssetError, match="unreachable"):
        fetch("fake", tmp_path, progress=False)
    assert not (tmp_path / "fake").exists()
    assert not list(tmp_path.glob(".tmp-*"))
    assert not asset_status("fake", tmp_path).present


def test_failed_refetch_keeps_nothing_half_valid(fake: FakeSource, tmp_path: Path) -> None:
    fetch("fake", tmp_path, progress=False)
    fake.fail = True
    with pytest.raises(AssetError):
        fetch("fake", tmp_path, force=True, progress=False)
    # the previous complete asset is untouched
    assert asset_status("fake", tmp_path, full=True).present


def test_stale_staging_of_a_killed_fetch_is_ignored_and_cleaned(fake: FakeSource, tmp_path: Path) -> None:
    stale = tmp_path / ".tmp-fake-killed"
    stale.mkdir(parents=True)
    (stale / "a.bin").write_bytes(b"A" * 10)
    assert not asset_status("fake", tmp_path).present
    fetch("fake", tmp_path, progress=False)
    assert not stale.exists()


def test_pin_mismatch_is_an_error(monkeypatch: pytest.MonkeyPatch, fake: FakeSource, tmp_path: Path) -> None:
    spec = core.ASSETS.get("fake")
    reg: Registry[core.AssetSpec] = Registry("asset")
    reg.add("fake", dataclasses.replace(spec, tree_sha256="0" * 64))
    monkeypatch.setattr(core, "ASSETS", reg)
    with pytest.raises(AssetError, match="does not match the pinned value"):
        fetch("fake", tmp_path, progress=False)
    assert not (tmp_path / "fake").exists()


def test_manifest_of_another_version_is_not_valid(monkeypatch: pytest.MonkeyPatch, fake: FakeSource, tmp_path: Path) -> None:
    fetch("fake", tmp_path, progress=False)
    spec = core.ASSETS.get("fake")
    reg: Registry[core.AssetSpec] = Registry("asset")
    reg.add("fake", dataclasses.replace(spec, tree_sha256="1" * 64))
    monkeypatch.setattr(core, "ASSETS", reg)
    assert "pinned" in asset_status("fake", tmp_path).reason


def test_list_and_unknown_names(fake: FakeSource, tmp_path: Path) -> None:
    rows = list_assets(tmp_path)
    assert [(r.name, r.present, r.size) for r in rows] == [("fake", False, 0)]
    fetch("fake", tmp_path, progress=False)
    (row,) = list_assets(tmp_path)
    assert row.present and row.size == 1012 and row.path == tmp_path / "fake" / "a.bin"
    with pytest.raises(UnknownNameError, match="valid assets: fake"):
        fetch("nope", tmp_path)


def test_unwritable_cache_is_an_asset_error(fake: FakeSource, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AssetError, match="cannot create the asset cache"):
        fetch("fake", blocker / "cache", progress=False)


def test_builtin_catalog_is_pinned() -> None:
    from aft.assets import DEFAULT_ASSETS, asset_names, get_spec

    names = asset_names()
    assert set(DEFAULT_ASSETS) <= set(names)
    assert {"mpnet", "efficientnet-lite1", "efficientnet-lite2"} <= set(names)
    from aft.assets.catalog import UNPINNED

    assert set(UNPINNED) <= set(names) and not set(UNPINNED) & set(DEFAULT_ASSETS)
    for name in names:
        pin = get_spec(name).tree_sha256
        if name in UNPINNED:  # a test tool whose file set depends on the machine; its package version is pinned
            assert pin is None
            continue
        assert pin is not None and len(pin) == 64 and int(pin, 16) >= 0
    assert sorted(asset_names(default_only=True)) == sorted(DEFAULT_ASSETS)
    assert os.fspath(get_spec("efficientnet-lite0").result).endswith(".pth")

"""Cached assets are checked against their pinned sha256 when used, not only by ``--verify``
(issue 14, item 5): hashed once per file, remembered by stat in a sidecar, refused when changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import aft.atomic_io as atomic_io
from aft.assets import ensure, hashcache
from aft.errors import AssetError

REAL = Path(os.environ.get("AFT_REAL_CACHE", str(Path.home() / ".cache" / "aft"))) / "efficientnet-lite0"


class CountingHash:
    """Wraps `aft.atomic_io.sha256_file`, recording every file actually read."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.real = atomic_io.sha256_file

    def __call__(self, path, *a, **kw):  # type: ignore[no-untyped-def]
        self.paths.append(os.path.realpath(path))
        return self.real(path, *a, **kw)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingHash:
    c = CountingHash()
    monkeypatch.setattr(atomic_io, "sha256_file", c)
    return c


@pytest.fixture
def effnet_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache holding a copy of the fetched EfficientNet-Lite0 asset (the real one is never touched)."""
    if not (REAL / ".aft-asset.json").is_file():
        pytest.skip("efficientnet-lite0 is not fetched; run `aft assets fetch efficientnet-lite0`")
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copytree(REAL, cache / "efficientnet-lite0")
    monkeypatch.setenv("AFT_CACHE_DIR", str(cache))
    return cache


def weights_file(cache: Path) -> Path:
    (f,) = (cache / "efficientnet-lite0").glob("*.pth")
    return f


def flip_one_byte(path: Path, offset: int | None = None) -> None:
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // 2 if offset is None else offset)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0x01]))


def test_one_flipped_bit_in_cached_teacher_weights_is_refused(effnet_cache: Path, counting: CountingHash):
    from aft.teachers import build_teacher
    from aft.teachers._assets import asset_path

    flip_one_byte(weights_file(effnet_cache))
    for use in (lambda: ensure("efficientnet-lite0"), lambda: asset_path("efficientnet-lite0"),
                lambda: build_teacher("efficientnet-lite0")):
        with pytest.raises(AssetError, match=r"wrong sha256 .*aft assets fetch --force efficientnet-lite0") as info:
            use()
        assert "\n" not in str(info.value)
    assert len(counting.paths) == 1  # refused three times, hashed once: the bad digest is remembered too


def test_unchanged_asset_is_hashed_once_then_only_stat(effnet_cache: Path, counting: CountingHash):
    from aft.teachers._assets import asset_path

    path = ensure("efficientnet-lite0")
    assert path == weights_file(effnet_cache)
    assert counting.paths == [os.path.realpath(path)]  # first use: one full hash of the copied file
    sidecar = effnet_cache / ".efficientnet-lite0.sha256.json"
    entry = json.loads(sidecar.read_text())["files"][os.path.realpath(path)]
    st = path.stat()
    assert entry["stat"][:2] == [st.st_size, st.st_mtime_ns]
    for _ in range(3):
        assert ensure("efficientnet-lite0") == path
        assert asset_path("efficientnet-lite0") == path
    assert len(counting.paths) == 1  # later uses: stat only
    # a rewrite with the same bytes changes ctime/mtime: hashed again (once), still accepted
    path.write_bytes(path.read_bytes())
    assert ensure("efficientnet-lite0") == path and len(counting.paths) == 2


def test_flip_after_a_cached_verification_is_still_caught(effnet_cache: Path, counting: CountingHash):
    ensure("efficientnet-lite0")
    flip_one_byte(weights_file(effnet_cache), offset=0)
    with pytest.raises(AssetError, match="wrong sha256"):
        ensure("efficientnet-lite0")
    assert len(counting.paths) == 2


def test_a_fresh_fetch_remembers_its_digests(tmp_path: Path, counting: CountingHash, monkeypatch):
    import aft.assets.core as core
    from aft.registry import Registry

    payload = b"W" * 4096

    def build(dest: Path, progress: bool) -> None:
        (dest / "w.bin").write_bytes(payload)

    reg: Registry[core.AssetSpec] = Registry("asset")
    import hashlib

    pin = core.tree_digest({"w.bin": {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}})
    reg.add("fake", core.AssetSpec("fake", "fake", "fake", build, result="w.bin", tree_sha256=pin))
    monkeypatch.setattr(core, "ASSETS", reg)
    monkeypatch.setattr(core, "_CATALOG_LOADED", True)
    path = core.fetch("fake", tmp_path, progress=False)
    n = len(counting.paths)
    assert core.ensure("fake", tmp_path) == path and len(counting.paths) == n  # no second read after fetch
    core.remove("fake", tmp_path)
    assert not (tmp_path / ".fake.sha256.json").exists()


def test_package_copy_of_the_weights_is_checked_against_the_pin(tmp_path: Path, monkeypatch):
    """The fallback (weights inside the installed pip package) is refused when it differs from the pin."""
    from aft.teachers._assets import asset_path

    if not (REAL / ".aft-asset.json").is_file():
        pytest.skip("efficientnet-lite0 is not fetched")
    monkeypatch.setenv("AFT_CACHE_DIR", str(tmp_path / "empty-cache"))
    good = tmp_path / "pkg" / weights_file(REAL.parent).name
    good.parent.mkdir()
    shutil.copyfile(weights_file(REAL.parent), good)
    assert asset_path("efficientnet-lite0", lambda: good) == good
    flip_one_byte(good)
    with pytest.raises(AssetError, match="differs from the sha256 pinned for efficientnet-lite0"):
        asset_path("efficientnet-lite0", lambda: good)


def test_files_version_changes_when_any_byte_of_a_large_file_changes(tmp_path: Path, monkeypatch, counting):
    from aft.teachers.base import files_version

    monkeypatch.setenv("AFT_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "model" / "weights.bin"
    f.parent.mkdir()
    f.write_bytes(bytes(range(256)) * ((17 << 20) // 256))  # 17 MB: over the 16 MB "large" threshold
    v0 = files_version(f.parent)
    assert files_version(f.parent) == v0 and len(counting.paths) == 1  # second call: stat only
    flip_one_byte(f)  # the middle: neither the first nor the last MB
    v1 = files_version(f.parent)
    assert v1 != v0
    flip_one_byte(f)  # back to the original bytes
    assert files_version(f.parent) == v0 == files_version(f)


def test_hash_cache_survives_an_unwritable_sidecar(tmp_path: Path, monkeypatch):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    monkeypatch.setattr(hashcache.atomic_io, "atomic_write_json", lambda *a, **k: (_ for _ in ()).throw(OSError(30, "ro")))
    cache = hashcache.HashCache(tmp_path / "ro" / ".aft-sha256.json")
    assert cache.sha256(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    cache.save()  # no error: only the memo is lost

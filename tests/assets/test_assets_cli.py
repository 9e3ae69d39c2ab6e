"""`aft assets fetch|list` through `aft.cli.main.main`."""

from __future__ import annotations

from pathlib import Path

import pytest

import aft.assets.core as core
from aft.cli.main import main
from aft.registry import Registry


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def build(dest: Path, progress: bool) -> None:
        calls.append(1)
        (dest / "f.txt").write_text("x")

    reg: Registry[core.AssetSpec] = Registry("asset")
    reg.add("fake", core.AssetSpec("fake", "fake asset", "fake", build, default=True))
    monkeypatch.setattr(core, "ASSETS", reg)
    monkeypatch.setattr(core, "_CATALOG_LOADED", True)
    return calls


def test_list_real_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "list", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("fashion-mnist", "spam-assassin", "minilm", "mpnet", "efficientnet-lite0", "wordllama"):
        assert name in out
    assert "present" in out and "no" in out


def test_fetch_then_list(fake_registry: list[int], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "fetch", "fake", "--cache-dir", str(tmp_path), "--no-progress"]) == 0
    assert main(["assets", "fetch", "fake", "--cache-dir", str(tmp_path)]) == 0
    assert fake_registry == [1]
    assert main(["assets", "fetch", "fake", "--cache-dir", str(tmp_path), "--force"]) == 0
    assert fake_registry == [1, 1]
    capsys.readouterr()
    assert main(["assets", "list", "--cache-dir", str(tmp_path), "--verify"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("fake"))
    assert "yes" in line and str(tmp_path / "fake") in line


def test_unknown_asset_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "fetch", "no-such-asset", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown asset 'no-such-asset'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "no-such-asset").exists()


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["assets", "--help"], ["assets", "fetch", "--help"], ["assets", "list", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--cache-dir" in out and "--force" in out and "default set" in out

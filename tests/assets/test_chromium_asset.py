"""The chromium asset: apt's simulated install gives the packages to fetch (new and upgraded ones, at
the versions apt chose); symlinks of the unpacked tree become files, links leaving it are dropped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aft.assets import chromium
from aft.errors import AssetError

SIMULATED = """NOTE: This is only a simulation!
Inst libopus0 (1.3.1-3 Debian:12.12/stable [amd64])
Inst libpulse0 [16.1+dfsg1-2] (16.1+dfsg1-2+b1 Debian:12.12/stable [amd64])
Inst chromium-headless-shell (150.0.7871.100-1~deb12u1 Debian-Security:12/stable-security [amd64])
Conf libopus0 (1.3.1-3 Debian:12.12/stable [amd64])
"""


def test_closure_lists_every_package_apt_would_install(monkeypatch) -> None:
    monkeypatch.setattr(chromium, "run_tool", lambda cmd, **kw: SIMULATED)
    got = chromium._closure("chromium-headless-shell", "150.0.7871.100-1~deb12u1", "fix")
    assert got == ["libopus0=1.3.1-3", "libpulse0=16.1+dfsg1-2+b1",
                   "chromium-headless-shell=150.0.7871.100-1~deb12u1"]
    monkeypatch.setattr(chromium, "run_tool", lambda cmd, **kw: "Inst libopus0 (1.3.1-3 Debian [amd64])\n")
    with pytest.raises(AssetError, match="would not install chromium-headless-shell"):
        chromium._closure("chromium-headless-shell", "150.0.7871.100-1~deb12u1", "fix")


def test_dereference_copies_inside_links_and_drops_outside_ones(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "libx.so.1.2").write_bytes(b"ELF")
    os.symlink("libx.so.1.2", root / "lib" / "libx.so.1")
    os.symlink("/etc/hostname", root / "lib" / "outside")
    chromium._dereference(root)
    link = root / "lib" / "libx.so.1"
    assert not link.is_symlink() and link.read_bytes() == b"ELF"
    assert not (root / "lib" / "outside").exists()

"""The package list behind ``environment.txt`` is read once per process and again only
when an install changes a folder on ``sys.path``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tasks.environment import installed_packages


def _install(site: Path, name: str, version: str) -> Path:
    """Lay out a real ``.dist-info`` folder, as pip does, and bump the folder's mtime."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    stamp = site.stat().st_mtime_ns + 1_000_000_000  # a later install: a later mtime
    os.utime(site, ns=(stamp, stamp))
    return info


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    return tmp_path


def test_an_install_between_two_reads_is_seen(site: Path) -> None:
    assert "forge-probe-pkg" not in installed_packages()
    old = _install(site, "forge-probe-pkg", "1.0")
    assert installed_packages()["forge-probe-pkg"] == "1.0"
    for child in old.iterdir():
        child.unlink()
    old.rmdir()
    _install(site, "forge-probe-pkg", "2.0")
    assert installed_packages()["forge-probe-pkg"] == "2.0"


def test_repeated_reads_are_served_from_the_memo(site: Path) -> None:
    first = installed_packages()
    # A .dist-info that appears without the folder's mtime moving is invisible until the
    # next change: the proof that the second read did not scan again.
    hidden = site / "forge-hidden-pkg-1.0.dist-info"
    before = site.stat().st_mtime_ns
    hidden.mkdir()
    (hidden / "METADATA").write_text("Metadata-Version: 2.1\nName: forge-hidden-pkg\nVersion: 1.0\n")
    os.utime(site, ns=(before, before))
    second = installed_packages()
    assert second == first
    second["mutated"] = "1"
    assert "mutated" not in installed_packages()

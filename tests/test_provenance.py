"""The package list behind ``environment.txt`` is read once per process and again only
when an install changes a folder on ``sys.path``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tasks import provenance
from tasks.provenance import installed_packages, package_versions


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


def test_repeated_reads_scan_the_distributions_once(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = []
    real = provenance.metadata.distributions

    def counting() -> object:
        scans.append(1)
        return real()

    monkeypatch.setattr(provenance.metadata, "distributions", counting)
    first = installed_packages()
    second = installed_packages()
    assert second == first
    before = len(scans)
    assert before <= 1  # the first read may be served by an earlier test's scan
    second["mutated"] = "1"
    assert "mutated" not in installed_packages()  # callers get copies
    assert len(scans) == before
    _install(site, "forge-probe-pkg", "3.0")
    assert installed_packages()["forge-probe-pkg"] == "3.0"
    assert len(scans) == before + 1  # the install was noticed and scanned once


def test_package_versions_match_importlib_metadata_for_any_spelling() -> None:
    from importlib import metadata

    names = ("PyYAML", "pyyaml", "h5py", "Luigi", "no-such-dist-anywhere")
    found = package_versions(names)
    assert "no-such-dist-anywhere" not in found
    for name in names[:-1]:
        assert found[name] == metadata.version(name)

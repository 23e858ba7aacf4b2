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


def test_the_package_list_equals_what_the_full_metadata_parse_gives(site: Path) -> None:
    # Headers the way real files write them: CRLF line ends, a folded header, a body that
    # mentions other names and versions, and a distribution without a name (skipped).
    odd = site / "odd_pkg-0.1.dist-info"
    odd.mkdir()
    (odd / "METADATA").write_bytes(
        b"Metadata-Version: 2.1\r\nName: Odd.Pkg\r\nSummary: a long\r\n  folded summary\r\n"
        b"Version: 0.1.post2\r\n\r\nName: not-this\r\nVersion: 9.9\r\n"
    )
    nameless = site / "nameless-1.0.dist-info"
    nameless.mkdir()
    (nameless / "METADATA").write_bytes(
        b"Metadata-Version: 2.1\r\nVersion: 1.0\r\n\r\nName: from-the-body\r\n"
    )
    stamp = site.stat().st_mtime_ns + 1_000_000_000
    os.utime(site, ns=(stamp, stamp))

    expected: dict[str, str] = {}
    seen: set[str] = set()
    for dist in provenance.metadata.distributions():  # the reference: a full e-mail parse
        name = dist.metadata["Name"]
        key = name and name.lower().replace("_", "-").replace(".", "-")
        if name and key not in seen:
            seen.add(key)
            expected[name] = dist.version
    got = installed_packages()
    assert got == expected
    assert got["Odd.Pkg"] == "0.1.post2" and "not-this" not in got
    assert "from-the-body" not in got
    assert len(got) > 20  # every distribution of this environment was compared


def test_package_versions_match_importlib_metadata_for_any_spelling() -> None:
    from importlib import metadata

    names = ("PyYAML", "pyyaml", "h5py", "Luigi", "no-such-dist-anywhere")
    found = package_versions(names)
    assert "no-such-dist-anywhere" not in found
    for name in names[:-1]:
        assert found[name] == metadata.version(name)


def _git(cwd: Path, *args: str) -> None:
    import subprocess

    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_the_git_state_is_asked_once_per_process_and_folder(tmp_path: Path) -> None:
    repo, other = tmp_path / "repo", tmp_path / "other"
    for folder in (repo, other):
        folder.mkdir()
        _git(folder, "init", "-q")
        (folder / "train.py").write_text("print(1)\n")
        _git(folder, "add", "train.py")
        _git(folder, "commit", "-q", "-m", "first")
    first, _ = provenance.git_state(repo)
    assert first["commit"] and first["dirty"] is False
    # An edit after the process started does not change the code it runs: the state it
    # recorded first stays, and callers get their own copy of it.
    (repo / "train.py").write_text("print(2)\n")
    again, diff = provenance.git_state(repo)
    assert again == first and diff == ""
    again["dirty"] = True
    assert provenance.git_state(repo)[0]["dirty"] is False
    # The control: a folder not asked before is asked now, and sees its own edit.
    (other / "train.py").write_text("print(3)\n")
    state, diff = provenance.git_state(other)
    assert state["dirty"] is True and "print(3)" in diff

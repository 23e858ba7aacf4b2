"""Memos per file version: reused while a file stays the same, never once it changed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.store import summary, versions
from tasks.store.names import METRICS_FILE
from tasks.store.versions import memoised_read

# Linux file timestamps advance in coarse ticks (a few ms): sleep past one between writes
# that must be told apart, as the real RACY_NS window (1 s) does in production.
TICK_S = 0.05


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Trust files at once (instead of 1 s after their last change), so a test can show
    what the memo serves; the memo itself starts empty."""
    versions.clear_memos()
    monkeypatch.setattr(versions, "RACY_NS", 0)
    yield
    versions.clear_memos()


class Reader:
    """Reads a file and counts how often it really did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.path.read_text(encoding="utf-8")

    def read(self) -> str:
        return memoised_read("test", [str(self.path)], self)


def test_an_unchanged_file_is_read_once(tmp_path: Path, no_racy_window: None) -> None:
    reader = Reader(tmp_path / "a.json")
    reader.path.write_text("one", encoding="utf-8")
    time.sleep(TICK_S)
    assert [reader.read() for _ in range(5)] == ["one"] * 5
    assert reader.calls == 1


@pytest.mark.parametrize("change", ["in place, same size", "replaced", "chmod", "removed"])
def test_a_changed_file_is_read_again(tmp_path: Path, no_racy_window: None, change: str) -> None:
    reader = Reader(tmp_path / "a.json")
    reader.path.write_text("one", encoding="utf-8")
    time.sleep(TICK_S)
    assert reader.read() == "one"
    stat = reader.path.stat()
    time.sleep(TICK_S)
    if change == "in place, same size":
        reader.path.write_text("two", encoding="utf-8")
        os.utime(reader.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime put back
        expected = "two"  # the ctime still moved
    elif change == "replaced":
        (tmp_path / "b.json").write_text("three", encoding="utf-8")
        os.replace(tmp_path / "b.json", reader.path)
        expected = "three"
    elif change == "chmod":
        reader.path.chmod(0o600)
        expected = "one"
    else:
        reader.path.unlink()
        with pytest.raises(FileNotFoundError):
            reader.read()
        assert reader.calls == 2
        return
    time.sleep(TICK_S)
    assert reader.read() == expected
    assert reader.calls == 2


def test_a_file_changed_within_the_racy_window_is_never_memoised(tmp_path: Path) -> None:
    versions.clear_memos()
    reader = Reader(tmp_path / "a.json")
    reader.path.write_text("one", encoding="utf-8")
    assert [reader.read() for _ in range(3)] == ["one"] * 3
    assert reader.calls == 3  # just written: its timestamps may still not move on a change


def _experiment(root: Path) -> Path:
    """A finished-looking experiment folder with a readable metrics.csv."""
    directory = root / "data-00000000" / "model-00000000" / "train-00000000"
    (directory / "model").mkdir(parents=True)
    (directory / METRICS_FILE).write_text("epoch,loss\n1,0.5\n", encoding="utf-8")
    (directory / "config.yaml").write_text("data: {}\nmodel: {}\ntrain: {}\n", encoding="utf-8")
    return directory


def test_experiment_damage_is_memoised_and_sees_an_in_place_change(
    tmp_path: Path, no_racy_window: None
) -> None:
    directory = _experiment(tmp_path)
    time.sleep(TICK_S)
    before = summary.experiment_damage(directory) or ""
    assert "metrics.csv" not in before
    assert versions._memo, "the check was memoised"
    assert summary.experiment_damage(directory) == (before or None)
    time.sleep(TICK_S)
    # The same size, written in place: no folder mtime moves, only the file's own version.
    (directory / METRICS_FILE).write_text("epoch,loss\n1,x.5\n", encoding="utf-8")
    time.sleep(TICK_S)
    after = summary.experiment_damage(directory) or ""
    assert "metrics.csv" in after, after


@pytest.mark.parametrize("name", [METRICS_FILE, "checkpoints/epoch-0001.pt", "model/best.bin"])
def test_experiment_damage_sees_a_symbolic_link_swapped_in(
    tmp_path: Path, no_racy_window: None, name: str
) -> None:
    directory = _experiment(tmp_path)
    target = directory / name
    target.parent.mkdir(exist_ok=True)
    target.write_text("epoch,loss\n1,0.5\n", encoding="utf-8")
    stash = tmp_path / "stash"
    time.sleep(TICK_S)
    assert "symbolic link" not in (summary.experiment_damage(directory) or "")
    target.rename(stash)  # moved aside and linked back: the content is the same
    target.symlink_to(stash)
    time.sleep(TICK_S)
    assert f"{name} is a symbolic link" in (summary.experiment_damage(directory) or "")

"""The per-process memo of accepted HDF5 files never vouches for a changed file, and the
split shared between streams is the file's current content, read-only."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from tasks.data.h5safe import open_checked
from tasks.data.h5store import BatchStream, write_splits
from tasks.errors import CorruptArtifactError


def _good(path: Path) -> None:
    with h5py.File(path, "w") as fh:
        fh["train/x"] = np.arange(6, dtype=np.float32).reshape(3, 2)


def test_a_file_changed_after_it_was_accepted_is_walked_again(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    _good(path)
    (tmp_path / "secret.h5").write_bytes(path.read_bytes())
    open_checked(path).close()  # accepted and remembered
    before = path.stat()
    with h5py.File(path, "a") as fh:  # the same file, edited in place to point outside
        fh["train/leak"] = h5py.ExternalLink(str(tmp_path / "secret.h5"), "/train/x")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and its mtime put back
    with pytest.raises(CorruptArtifactError, match="ExternalLink"):
        open_checked(path)


def test_the_memo_is_what_skips_the_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.data import h5safe

    path = tmp_path / "data.h5"
    _good(path)
    walks: list[Path] = []
    real = h5safe.check_hdf5
    monkeypatch.setattr(h5safe, "check_hdf5", lambda fh, p: (walks.append(p), real(fh, p)))
    for _ in range(3):
        open_checked(path).close()
    assert walks == [path]
    _good(path)  # rewritten: a new version
    open_checked(path).close()
    assert walks == [path, path]


def _data(path: Path, shift: float) -> None:
    x = np.arange(40, dtype=np.float32).reshape(20, 2) + shift
    y = np.arange(20) % 2
    write_splits(path, {"x": x, "y": y}, {"val": 0.2, "test": 0.2, "seed": 0}, {}, "test")


def test_streams_share_the_current_split_read_only(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    _data(path, 0.0)
    first = BatchStream(path, "train", 4, shuffle=False)
    second = BatchStream(path, "train", 4, shuffle=False)
    whole = first.whole()
    assert whole is not None and whole is second.whole()
    with pytest.raises(ValueError, match="read-only"):
        whole["x"][0, 0] = 1.0
    batch = next(second.epoch(0))
    batch["x"][0, 0] = -1.0  # a consumer may write into its own batch
    assert whole["x"][0, 0] != -1.0
    path.unlink()
    _data(path, 100.0)  # PrepareData ran again: new content, new version
    third = BatchStream(path, "train", 4, shuffle=False)
    fresh = third.whole()
    assert fresh is not None and float(fresh["x"].min()) >= 100.0


def test_a_known_version_is_not_opened_again_and_a_new_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.data import h5store

    path = tmp_path / "data.h5"
    _data(path, 0.0)
    h5store.clear_read_memos()
    opened: list[Path] = []
    real = h5store.open_checked
    monkeypatch.setattr(h5store, "open_checked", lambda p: (opened.append(p), real(p))[1])
    first = h5store.read_meta(path)
    stream = BatchStream(path, "train", 4, shuffle=False)
    assert len(opened) == 2
    again = h5store.read_meta(path)
    same = BatchStream(path, "train", 4, shuffle=False)
    assert len(opened) == 2  # both answered from what the first opens read
    assert again == first and again is not first and again.arrays is not first.arrays
    assert same.whole() is stream.whole() and (same.rows, same.names) == (stream.rows, stream.names)
    # A new version (PrepareData ran again, with more rows) is opened, and seen.
    path.unlink()
    x = np.arange(80, dtype=np.float32).reshape(40, 2)
    write_splits(path, {"x": x, "y": np.arange(40) % 2}, {"val": 0.2, "test": 0.2, "seed": 0},
                 {}, "test")  # fmt: skip
    grown = BatchStream(path, "train", 4, shuffle=False)
    assert len(opened) == 3 and grown.rows == 24 and h5store.read_meta(path).rows["train"] == 24

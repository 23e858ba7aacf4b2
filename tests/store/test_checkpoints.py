"""Checkpoints: only committed ones count, pruning deletes only Forge's own names, and the
best-epoch rule handles NaN."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tasks.store.checkpoints import (
    best_path,
    checkpoint_path,
    commit,
    commit_partial,
    committed,
    improves,
    partial_path,
    prune,
    retain,
)
from tasks.store.names import CHECKPOINT_DIR


def _write(directory: Path, epoch: int, *, sidecar: bool = True) -> Path:
    path = checkpoint_path(directory, epoch, ".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    if sidecar:
        commit(directory, epoch, ".pt", {"best_epoch": epoch, "best_value": 0.5})
    return path


def test_only_checkpoints_with_a_sidecar_count(tmp_path: Path) -> None:
    _write(tmp_path, 1)
    _write(tmp_path, 2, sidecar=False)  # crashed before committing
    (tmp_path / CHECKPOINT_DIR / "epoch-0003.json").write_text("{torn")
    infos = committed(tmp_path)
    assert [i.epoch for i in infos] == [1]
    assert infos[0].best_epoch == 1 and infos[0].best_value == 0.5


def test_a_sidecar_pointing_elsewhere_is_ignored(tmp_path: Path) -> None:
    _write(tmp_path, 1)
    (tmp_path / CHECKPOINT_DIR / "epoch-0001.json").write_text('{"file": "../../etc/passwd"}')
    assert committed(tmp_path) == []


def test_prune_after_resume_drops_later_epochs_and_keeps_user_files(tmp_path: Path) -> None:
    for epoch in (1, 2, 3):
        _write(tmp_path, epoch)
        best_path(tmp_path, epoch, ".pt").write_bytes(b"best")
    folder = tmp_path / CHECKPOINT_DIR
    (folder / "notes-epoch-9.txt").write_text("mine")
    prune(tmp_path, after=2)
    names = sorted(p.name for p in folder.iterdir())
    assert "epoch-0003.pt" not in names and "best-0003.pt" not in names
    assert {"epoch-0001.pt", "epoch-0002.pt", "best-0002.pt", "notes-epoch-9.txt"} <= set(names)
    prune(tmp_path, keep_best=2)
    assert not (folder / "best-0001.pt").exists() and (folder / "best-0002.pt").exists()


def _write_partial(directory: Path, epoch: int) -> Path:
    path = partial_path(directory, epoch, ".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    state = {"epoch": epoch, "batches": 3, "of": 9, "rows": 30, "sums": {}, "lr": 0.1}
    commit_partial(directory, epoch, ".pt", {"best_epoch": None, "loop": {"partial": state}})
    return path


def test_a_partial_checkpoint_is_seen_only_by_resume(tmp_path: Path) -> None:
    for epoch in (1, 2):
        _write(tmp_path, epoch)
    _write_partial(tmp_path, 3)  # epochs 1-2 and 3 batches of epoch 3
    assert [i.epoch for i in committed(tmp_path)] == [1, 2]
    assert retain(tmp_path, 1) == 2 and [i.epoch for i in committed(tmp_path)] == [2]
    infos = committed(tmp_path, partial=True)
    assert [(i.epoch, i.partial, i.path.name) for i in infos] == [
        (2, False, "epoch-0002.pt"), (2, True, "partial-0003.pt"),
    ]  # fmt: skip
    assert infos[-1].loop["partial"]["batches"] == 3
    prune(tmp_path, after=2)  # resuming from it keeps it
    assert partial_path(tmp_path, 3, ".pt").exists()
    _write_partial(tmp_path, 4)  # a newer one replaces it
    assert [i.path.name for i in committed(tmp_path, partial=True) if i.partial] == [
        "partial-0004.pt"
    ]
    assert not partial_path(tmp_path, 3, ".pt").exists()
    prune(tmp_path, after=2)  # resuming from epoch 2 (partial-0004 failed to load)
    assert not list((tmp_path / CHECKPOINT_DIR).glob("partial-*"))
    _write_partial(tmp_path, 3)
    _write(tmp_path, 3)  # the epoch it was inside, finished: supersedes it
    assert not list((tmp_path / CHECKPOINT_DIR).glob("partial-*"))


@pytest.mark.parametrize(
    ("value", "best", "mode", "expected"),
    [
        pytest.param(1.0, None, "min", True, id="first"),
        pytest.param(0.5, 1.0, "min", True, id="lower-min"),
        pytest.param(1.5, 1.0, "min", False, id="higher-min"),
        pytest.param(1.5, 1.0, "max", True, id="higher-max"),
        pytest.param(1.0, 1.0, "max", False, id="tie"),
        pytest.param(math.nan, None, "min", True, id="nan-first"),
        pytest.param(math.nan, 1.0, "min", False, id="nan-never-beats"),
        pytest.param(5.0, math.nan, "min", True, id="beats-nan"),
    ],
)
def test_best_epoch_selection(value: float, best: float | None, mode: str, expected: bool) -> None:
    assert improves(value, best, mode) is expected

"""Atomic writes: a file appears complete or not at all; leftovers of dead writers are
cleaned, and nothing a user put there is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.errors import CorruptArtifactError, StorageError
from tasks.store.atomic import (
    atomic_dir,
    atomic_path,
    atomic_write_text,
    clean_leftovers,
    storage_error,
    synced_at_end,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "f.txt"
    atomic_write_text(dest, "old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_atomic_dir_replaces_an_earlier_attempt(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "stale").write_text("x")
    with atomic_dir(dest) as tmp:
        (tmp / "fresh").write_text("y")
    assert sorted(p.name for p in dest.iterdir()) == ["fresh"]


def test_write_errors_become_one_storage_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(StorageError, match="writing"):
        atomic_write_text(blocked / "sub" / "x.txt", "data")


def test_leftovers_of_dead_writers_only_are_cleaned(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    ours = tmp_path / f".tmp-{os.getpid()}-0123abcd-weights.pt"
    theirs = tmp_path / "checkpoints" / f".tmp-{pid}-89abcdef-epoch-0001.pt"
    user = tmp_path / ".tmp-2024-notes.txt"
    nested_step = tmp_path / "eval" / "default-1234" / f".tmp-{pid}-89abcdef-x"
    for path in (ours, theirs, user, nested_step):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (nested_step.parent / ".digest").write_text("d\n")
    removed = clean_leftovers(tmp_path)
    assert removed == [theirs]
    assert ours.exists() and user.exists() and nested_step.exists()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(OSError(28, "No space left on device"), "No space left", id="oserror"),
        pytest.param(
            RuntimeError("Can't close file (file write failed: time = x\n, errno = 28, ...)"),
            "No space left",
            id="hdf5-multiline",
        ),
        pytest.param(Exception("I/O error: File too large (os error 27)"), "too large", id="rust"),
        pytest.param(
            RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"),
            "file write failed",
            id="pytorch",
        ),
    ],
)
def test_storage_failures_wrapped_by_libraries_are_one_storage_error_line(
    error: BaseException, reason: str
) -> None:
    converted = storage_error(error, "x.h5")
    assert isinstance(converted, StorageError)
    assert reason in str(converted) and "\n" not in str(converted), converted


@pytest.mark.parametrize(
    "error",
    [ValueError("shapes do not match"), CorruptArtifactError("No space left on device")],
    ids=["other", "forge-error"],
)
def test_other_errors_are_not_storage_errors(error: BaseException) -> None:
    assert storage_error(error, "x.h5") is None


def test_finished_files_honour_the_umask_whatever_mode_the_writer_chose(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        with atomic_path(tmp_path / "w.bin") as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # as safetensors does
            os.close(fd)
        with atomic_dir(tmp_path / "d") as folder:
            os.mkdir(folder / "sub", 0o700)
            (folder / "sub" / "f").write_text("x")
            os.chmod(folder / "sub" / "f", 0o600)
    finally:
        os.umask(old)
    assert (tmp_path / "w.bin").stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "d" / "sub").stat().st_mode & 0o777 == 0o775
    assert (tmp_path / "d" / "sub" / "f").stat().st_mode & 0o777 == 0o664


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths os.fsync is called on, in order (read back from the descriptor)."""
    seen: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def test_outside_a_block_every_write_is_synced_before_it_returns(
    tmp_path: Path, synced: list[str]
) -> None:
    atomic_write_text(tmp_path / "a.json", "{}")
    # The temporary is synced, renamed into place, then its folder is synced.
    assert len(synced) == 2 and synced[1] == str(tmp_path)
    assert Path(synced[0]).name.startswith(".tmp-") and synced[0].endswith("-a.json")


def test_a_block_syncs_its_files_together_before_the_marker(
    tmp_path: Path, synced: list[str]
) -> None:
    with synced_at_end() as barrier:
        atomic_write_text(tmp_path / "a.json", "{}")
        sub = tmp_path / "model"
        with atomic_path(sub / "w.bin") as tmp:
            tmp.write_bytes(b"123")
        assert synced == []  # renamed into place, not synced yet
        assert (tmp_path / "a.json").read_text() == "{}"
        barrier.sync()
        assert sorted(synced) == sorted(
            [str(tmp_path / "a.json"), str(sub / "w.bin"), str(tmp_path), str(sub)]
        )
        synced.clear()
        atomic_write_text(tmp_path / "_SUCCESS", "")
    assert sorted(synced) == [str(tmp_path), str(tmp_path / "_SUCCESS")]


def test_a_block_ended_by_an_error_still_syncs_and_keeps_the_error(
    tmp_path: Path, synced: list[str]
) -> None:
    with pytest.raises(KeyError), synced_at_end():
        atomic_write_text(tmp_path / "run.json", "{}")
        raise KeyError("the step failed")
    assert str(tmp_path / "run.json") in synced


def test_another_thread_inside_a_block_syncs_as_it_writes(
    tmp_path: Path, synced: list[str]
) -> None:
    import threading

    with synced_at_end():
        worker = threading.Thread(target=atomic_write_text, args=(tmp_path / "ckpt.json", "{}"))
        worker.start()
        worker.join()
        assert str(tmp_path) in synced  # the checkpoint thread did not wait for the block

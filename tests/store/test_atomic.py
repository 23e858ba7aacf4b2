"""Atomic writes: a file appears complete or not at all; leftovers of dead writers are
cleaned, and nothing a user put there is."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.errors import CorruptArtifactError, StorageError
from tasks.store import atomic
from tasks.store.atomic import (
    atomic_dir,
    atomic_path,
    atomic_write_text,
    chained_steps,
    clean_leftovers,
    collecting,
    commit_marker,
    set_sync_method,
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


def _spy(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, method: str
) -> Iterator[list[str]]:
    """Record the path behind every descriptor ``owner.name`` is called with, in order,
    while sync rounds use ``method``."""
    seen: list[str] = []
    real = getattr(owner, name)

    def spy(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(owner, name, spy)
    set_sync_method(method)
    yield seen
    set_sync_method("auto")


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths os.fsync is called on, with sync rounds of one fsync per file."""
    yield from _spy(monkeypatch, os, "fsync", "files")


@pytest.fixture
def whole_syncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths each syncfs is called through, with rounds of one syncfs per file system;
    skipped where syncfs is not available."""
    if atomic._libc_syncfs() is None:
        pytest.skip("syncfs (Linux 5.8+) is not available here")
    yield from _spy(monkeypatch, atomic, "_syncfs", "filesystem")


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


def test_a_filesystem_round_is_one_syncfs_and_no_fsync(
    tmp_path: Path, whole_syncs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fsynced: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: fsynced.append(fd))
    with synced_at_end() as barrier:
        atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_path(tmp_path / "model" / "w.bin") as tmp:
            tmp.write_bytes(b"123")
        atomic_write_text(tmp_path / "b.json", "{}")
        assert whole_syncs == []
        barrier.sync()
        assert len(whole_syncs) == 1  # one file system: one call makes all of them durable
        assert Path(whole_syncs[0]).parent in (tmp_path, tmp_path / "model") or Path(
            whole_syncs[0]
        ) in (tmp_path, tmp_path / "model")
    assert fsynced == []


def test_a_failed_syncfs_is_one_storage_error_naming_a_file(
    tmp_path: Path, whole_syncs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic, "_syncfs", failing)
    with pytest.raises(StorageError, match=str(tmp_path)), synced_at_end() as barrier:
        atomic_write_text(tmp_path / "a.json", "{}")
        barrier.sync()


def test_the_method_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="filesystem, files"):
        set_sync_method("never")


def test_in_a_chain_a_marker_is_synced_with_the_next_round(
    tmp_path: Path, synced: list[str]
) -> None:
    first, second = tmp_path / "data", tmp_path / "train"
    with chained_steps():
        with synced_at_end() as barrier:
            atomic_write_text(first / "data.json", "{}")
            commit_marker(barrier, first / "_SUCCESS")
        assert str(first / "data.json") in synced
        assert str(first / "_SUCCESS") not in synced  # left to the next round
        with synced_at_end() as barrier:
            atomic_write_text(second / "run.json", "{}")
            commit_marker(barrier, second / "_SUCCESS")
        # The next step's round took the first marker along, before its own marker.
        assert str(first / "_SUCCESS") in synced
        assert str(second / "_SUCCESS") not in synced
    assert str(second / "_SUCCESS") in synced  # the chain's end syncs what is left
    # The control: outside a chain, a marker is synced before commit_marker returns.
    synced.clear()
    with synced_at_end() as barrier:
        atomic_write_text(tmp_path / "eval" / "m.json", "{}")
        commit_marker(barrier, tmp_path / "eval" / "_SUCCESS")
        assert str(tmp_path / "eval" / "_SUCCESS") in synced


def test_a_failed_round_keeps_what_it_carried_for_the_next(
    tmp_path: Path, synced: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with chained_steps():
        with synced_at_end() as barrier:
            commit_marker(barrier, tmp_path / "_SUCCESS")
        real = atomic._sync_one

        def broken(path: Path) -> None:
            raise StorageError(f"writing {path} failed: I/O error")

        monkeypatch.setattr(atomic, "_sync_one", broken)
        with pytest.raises(StorageError), synced_at_end() as barrier:
            atomic_write_text(tmp_path / "b.json", "{}")
            barrier.sync()
        monkeypatch.setattr(atomic, "_sync_one", real)
        assert str(tmp_path / "_SUCCESS") not in synced
    assert str(tmp_path / "_SUCCESS") in synced  # carried over the failed round


def test_work_handed_to_a_barrier_is_waited_for_and_its_error_raised(
    tmp_path: Path, synced: list[str]
) -> None:
    done: Future[None] = Future()
    failed: Future[None] = Future()
    with synced_at_end() as barrier:
        barrier.wait_for(done)
        barrier.wait_for(failed)
        done.set_result(None)
        failed.set_exception(StorageError("the last checkpoint could not be written"))
        with pytest.raises(StorageError, match="last checkpoint"):
            barrier.sync()
        assert barrier.waits == []


def test_collected_writes_are_left_to_whoever_commits_them(
    tmp_path: Path, synced: list[str]
) -> None:
    with synced_at_end() as step:
        atomic_write_text(tmp_path / "run.json", "{}")
        with collecting() as checkpoint:
            atomic_write_text(tmp_path / "epoch-0001.ckpt", "weights")
        assert checkpoint.paths == {tmp_path / "epoch-0001.ckpt"}
        assert step.paths == {tmp_path / "run.json"}
        assert synced == []  # neither block synced anything yet
        checkpoint.sync()
        assert str(tmp_path / "epoch-0001.ckpt") in synced
        assert str(tmp_path / "run.json") not in synced


def test_a_round_waits_for_another_threads_round_that_took_a_carried_marker(
    tmp_path: Path, synced: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    marker, mine, theirs = tmp_path / "_SUCCESS", tmp_path / "a.json", tmp_path / "b.json"
    for path in (marker, mine, theirs):
        path.write_text("{}")
    started, release = threading.Event(), threading.Event()
    real = atomic._sync_one

    def slow_marker(path: Path) -> None:
        if path == marker:
            started.set()
            release.wait(10)
        real(path)

    monkeypatch.setattr(atomic, "_sync_one", slow_marker)
    with atomic._carried_lock:
        atomic._carried.add(marker)  # a chained step's marker, left to the next round
    first = threading.Thread(target=atomic._sync_all, args=({mine},))
    first.start()  # the checkpoint thread's round takes the marker along
    assert started.wait(10)
    second = threading.Thread(target=atomic._sync_all, args=({theirs},))
    second.start()  # the next step's round, before its own marker
    second.join(0.3)
    assert second.is_alive()  # it must not return before the marker it did not take is durable
    release.set()
    first.join(10)
    second.join(10)
    assert synced.index(str(marker)) < synced.index(str(theirs))


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_written_text_gets_the_mode_the_umask_asks_for(
    tmp_path: Path, umask: int, mode: int
) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "new" / "folder" / "r.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "new" / "folder" / "r.json").stat().st_mode & 0o777 == mode


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=3000))
def test_written_text_reads_back_as_its_utf8_bytes(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    folder = tmp_path_factory.mktemp("text")
    with synced_at_end():
        atomic_write_text(folder / "t.txt", text)
    assert (folder / "t.txt").read_bytes() == text.encode("utf-8")
    assert [p.name for p in folder.iterdir()] == ["t.txt"]


def test_a_text_write_that_cannot_be_renamed_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "inside").write_text("keep")
    with pytest.raises(StorageError, match="taken"):
        atomic_write_text(tmp_path / "taken", "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (tmp_path / "taken" / "inside").read_text() == "keep"


def test_text_is_synced_at_once_outside_a_block_and_with_the_round_inside(
    tmp_path: Path, synced: list[str]
) -> None:
    atomic_write_text(tmp_path / "now.txt", "a")
    assert synced[0].startswith(str(tmp_path / ".tmp-"))  # the file, before its rename
    assert synced[1:] == [str(tmp_path)]  # then the folder naming it
    synced.clear()
    with synced_at_end() as barrier:
        atomic_write_text(tmp_path / "later.txt", "b")
        assert synced == []
        assert barrier.paths == {tmp_path / "later.txt"}

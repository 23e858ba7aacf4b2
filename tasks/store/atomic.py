"""Atomic writes: a file or directory appears complete or not at all.

Everything is written to a temporary name beside its destination and renamed into place
(``os.replace`` is atomic on POSIX within one file system). Leftover temporaries of a
crashed process carry the ``.tmp-`` prefix and are removed by :func:`clean_leftovers`.
OS errors (disk full, I/O error, read-only directory) become :class:`StorageError`.

Durability: outside a :func:`synced_at_end` block a write is synced (file, then its folder)
before it returns. Inside one — a step's run — writes are renamed into place at once but
synced together in one round when the block ends (or at ``barrier.sync()``), either by one
``syncfs`` per file system or by concurrent ``fsync`` calls (:func:`set_sync_method`); the
step's marker is written after that (:func:`commit_marker`). A process that dies still
leaves every file old, new or absent; a power loss before a step's marker may leave its
files incomplete, and the step is not complete then, so the rerun rewrites them. Steps
chained in one thread (:func:`chained_steps`, a sweep shard) sync each marker with the next
round, so a later marker is never durable without an earlier one.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import shutil
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from tasks.errors import ForgeError, StorageError

__all__ = [
    "TMP_PREFIX",
    "atomic_dir",
    "atomic_path",
    "atomic_write_text",
    "commit_marker",
    "chained_steps",
    "clean_leftovers",
    "collecting",
    "current_barrier",
    "current_umask",
    "honour_umask",
    "reserve_space",
    "set_sync_method",
    "storage_error",
    "storage_errors",
    "sync_carried",
    "sync_file",
    "synced_at_end",
    "temporary_writer",
]

TMP_PREFIX = ".tmp-"
# Exactly the names _tmp_name generates: prefix, writer's pid, 8 hex digits, destination name.
_TMP_NAME = re.compile(r"^\.tmp-(\d+)-[0-9a-f]{8}-")
# A folder holding this file belongs to another (nested) step; its own run cleans it.
_STEP_MARKER = ".digest"

_PERMISSION_HINT = (
    "permission denied: another user owns it or the folder is not writable for you; in a "
    "results folder shared by a group, every member needs umask 002 (and the folder the "
    "group's setgid bit), else pass a writable --results-dir"
)
_HINTS = {
    errno.ENOSPC: "the disk is full; free space and rerun (completed steps are kept)",
    errno.EDQUOT: "the disk quota is exceeded; free space and rerun",
    errno.EFBIG: "the file is larger than allowed (file size limit); raise the limit and rerun",
    errno.EIO: "an I/O error occurred; check the disk and rerun",
    errno.EROFS: "the results directory is read-only; pass a writable --results-dir",
    errno.EACCES: _PERMISSION_HINT,
    errno.EPERM: _PERMISSION_HINT,
}


# How libraries that hide the OSError spell a storage failure in their messages:
# HDF5 "errno = 28", Rust "(os error 28)", TensorFlow and PyTorch the strerror text.
_ERRNO_IN_TEXT = re.compile(r"(?:errno = |\(os error )(\d+)")
_STRERROR_IN_TEXT = {
    os.strerror(code): code
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS, errno.EACCES)
}
_WRITE_FAILED = ("file write failed", "PytorchStreamWriter failed writing")


def storage_error(err: BaseException, what: str) -> StorageError | None:
    """``err`` as one :class:`StorageError` line when it is a failed write to storage,
    else None.

    OSErrors count, and the errors of libraries that wrap them in their own types with
    the cause only in the text (h5py/HDF5, safetensors, TensorFlow, PyTorch's writer).
    """
    if isinstance(err, ForgeError):  # already says what went wrong
        return err if isinstance(err, StorageError) else None
    code = err.errno if isinstance(err, OSError) else None
    text = str(err)
    if code is None:
        match = _ERRNO_IN_TEXT.search(text)
        if match is not None:
            code = int(match.group(1))
        else:
            code = next((c for msg, c in _STRERROR_IN_TEXT.items() if msg in text), None)
    if code is None and not isinstance(err, OSError):
        if not any(marker in text for marker in _WRITE_FAILED):
            return None
    hint = _HINTS.get(code or 0, "check the file system and rerun")
    if code:
        reason = os.strerror(code)
    else:
        reason = " ".join(text.split())[:200] or type(err).__name__
    return StorageError(f"writing {what} failed: {reason}; {hint}")


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn failed writes inside the block into one clear :class:`StorageError` line
    (see :func:`storage_error`); other errors pass through unchanged."""
    try:
        yield
    except Exception as err:
        converted = storage_error(err, what)
        if converted is None or converted is err:
            raise
        raise converted from err


def reserve_space(dest: Path, nbytes: int) -> None:
    """Claim ``nbytes`` of disk beside ``dest`` and give them back, before a writer that
    cannot survive a full disk (HDF5: a write failing for lack of space leaves the library
    in a state where closing the file crashes the process) starts writing.

    Raises:
        StorageError: the space is not there (disk full, quota, file size limit).
    """
    dest = Path(dest)
    reservation = _tmp_name(dest.with_name(dest.name + ".reserve"))
    with storage_errors(str(dest.with_name(_TMP_NAME.sub("", dest.name)))):
        fd = os.open(reservation, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, max(int(nbytes), 1))
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
                raise
            # A file system that cannot preallocate: go on without the guarantee.
        finally:
            os.close(fd)
            reservation.unlink(missing_ok=True)


def current_umask() -> int:
    """The process umask, read without changing it (``/proc`` on Linux; elsewhere the
    classic set-and-restore, which is safe here: Forge sets it from no other thread)."""
    try:
        fd = os.open("/proc/self/status", os.O_RDONLY)
        try:
            status = os.read(fd, 1 << 16)  # a few hundred bytes; read as one block
        finally:
            os.close(fd)
        start = status.find(b"\nUmask:")
        if start >= 0:
            return int(status[start + 7 :].split(None, 1)[0], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _chmod(path: Path, mode: int) -> None:
    """``chmod`` keeping the setuid/setgid/sticky bits (a setgid folder stays one)."""
    info = os.lstat(path)
    if not os.path.islink(path) and (info.st_mode & 0o777) != mode:
        os.chmod(path, mode | (info.st_mode & 0o7000))


def honour_umask(path: Path) -> None:
    """Give ``path`` (and, for a folder, everything in it) the permissions the process umask
    asks for: files ``0o666 & ~umask``, folders ``0o777 & ~umask``.

    Libraries create files with their own modes (safetensors writes ``0600``), which in a
    results folder shared by a group (umask 002) would lock the other members out.
    """
    mask = current_umask()
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    if not path.is_dir() or path.is_symlink():
        _chmod(path, file_mode)
        return
    _chmod(path, dir_mode)
    for base, dirs, files in os.walk(path):
        for name in dirs:
            _chmod(Path(base) / name, dir_mode)
        for name in files:
            _chmod(Path(base) / name, file_mode)


def _tmp_name(dest: Path) -> Path:
    return dest.with_name(f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{dest.name}")


# The barrier of the innermost synced_at_end (or collecting) block of this thread; None
# outside any. A new thread starts outside any block, so the checkpoint thread syncs as it
# writes unless it opens a block of its own.
_deferred: ContextVar[SyncBarrier | None] = ContextVar("forge_deferred_sync", default=None)
_SYNC_THREADS = 16
# How atomic_write_text creates its temporary: a new file (never an existing name).
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# Paths whose sync may wait for the next sync round of this process (see
# SyncBarrier.sync_with_next_round); any thread's round takes them along.
_carried: set[Path] = set()
_carried_lock = threading.Lock()
_round_lock = threading.Lock()


class SyncBarrier:
    """The paths a :func:`synced_at_end` block wrote; :meth:`sync` makes them durable.

    Attributes:
        paths: files and folders written in the block and not synced yet.
        waits: work handed to another thread (a checkpoint being committed) that must
            finish before this block's files count; :meth:`join` waits for it.
    """

    def __init__(self) -> None:
        self.paths: set[Path] = set()
        self.waits: list[Future[None]] = []

    def wait_for(self, future: Future[None]) -> None:
        """Make :meth:`join` (and so :meth:`sync`) wait for ``future`` and raise its error."""
        self.waits.append(future)

    def join(self) -> None:
        """Wait for the work handed over with :meth:`wait_for`; raise the first error."""
        waits, self.waits = self.waits, []
        errors = []
        for future in waits:
            try:
                future.result()
            except BaseException as err:  # wait for every one, then report the first
                errors.append(err)
        if errors:
            raise errors[0]

    def sync(self) -> None:
        """Wait for handed-over work, then sync every file written so far and the folders
        holding them, concurrently (with any paths carried from an earlier round).

        Raises:
            StorageError: a sync failed (the file is named); a file removed meanwhile is
                skipped.
        """
        self.join()
        # Files and the folders naming them in one round: both are done before this
        # returns, which is all the caller (about to write a marker) relies on.
        _sync_all(self._take())

    def sync_with_next_round(self) -> None:
        """Leave what was written since the last :meth:`sync` (a step's marker) to the next
        sync round of this process, whichever thread runs it, or :func:`sync_carried`.

        For an in-process chain of steps: the next step's files are synced in that round,
        before its own marker, so a later marker is never durable without an earlier one,
        and the chain pays one round per step instead of two.
        """
        taken = self._take()
        with _carried_lock:
            _carried.update(taken)

    def _take(self) -> set[Path]:
        """The paths written so far and the folders naming them; later writes go on
        collecting (``paths`` is the same set the block adds to, so it is emptied)."""
        paths = set(self.paths)
        self.paths.clear()
        return paths | {p.parent for p in paths}


def sync_carried() -> None:
    """Sync what :meth:`SyncBarrier.sync_with_next_round` left over, now."""
    _sync_all((), carried_only=True)


_chained: ContextVar[bool] = ContextVar("forge_chained_steps", default=False)


@contextlib.contextmanager
def chained_steps() -> Iterator[None]:
    """Steps run one after another in this thread (a sweep shard's experiments).

    Inside, :func:`commit_marker` leaves a step's marker to the next sync round (the next
    step's, before its own marker), and the block's end syncs what is left.
    """
    token = _chained.set(True)
    ok = False
    try:
        yield
        ok = True
    finally:
        _chained.reset(token)
        if ok:
            sync_carried()
        else:
            with contextlib.suppress(Exception):
                sync_carried()


def commit_marker(barrier: SyncBarrier, marker: Path) -> None:
    """Write the empty ``marker`` that makes a step complete, after syncing its files.

    Synced before this returns, or, inside :func:`chained_steps`, with the next sync
    round: a later step's marker is never durable without this one.
    """
    barrier.sync()  # the outputs are on disk before the marker says so
    atomic_write_text(marker, "")
    if _chained.get():
        barrier.sync_with_next_round()
    else:
        barrier.sync()


def _sync_one(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return  # replaced or removed after it was written: nothing of it to keep
    except OSError as err:
        raise storage_error(err, str(path)) or err from err
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != errno.EINVAL:  # a folder or file system that cannot be synced
            raise storage_error(err, str(path)) or err from err
    finally:
        os.close(fd)


SYNC_METHODS = ("auto", "filesystem", "files")
_sync_method = "auto"


def set_sync_method(method: str) -> None:
    """How sync rounds make files durable (``[forge] sync``).

    ``files``: an ``fsync`` per file and folder, concurrently. ``filesystem``: one
    ``syncfs`` per file system the round touches (Linux 5.8 or newer, which reports
    write-back errors through it), which also flushes other programs' unwritten data on
    that file system. ``auto``: ``filesystem`` where it is available, else ``files``.
    Both make the same files durable before the caller goes on.

    Raises:
        ValueError: an unknown method.
    """
    global _sync_method
    if method not in SYNC_METHODS:
        raise ValueError(f"unknown sync method {method!r}; use one of {', '.join(SYNC_METHODS)}")
    _sync_method = method


@functools.cache
def _libc_syncfs() -> Any:
    """libc's ``syncfs``, where it reports errors (Linux 5.8+); None elsewhere."""
    if sys.platform != "linux":
        return None
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return None
    if (major, minor) < (5, 8):  # before 5.8, syncfs returned 0 after a failed write-back
        return None
    import ctypes  # here, not at import: a no-op rerun never syncs

    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


def _syncfs(fd: int) -> None:
    """``syncfs(fd)``: flush the whole file system holding ``fd``."""
    import ctypes

    if _libc_syncfs()(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _sync_filesystems(paths: Iterable[Path]) -> None:
    """One ``syncfs`` per file system among ``paths`` (each named by one of them)."""
    by_device: dict[int, Path] = {}
    for path in paths:
        try:
            by_device.setdefault(os.stat(path).st_dev, path)
        except FileNotFoundError:
            continue  # replaced or removed after it was written: nothing of it to keep
        except OSError as err:
            raise storage_error(err, str(path)) or err from err
    for path in by_device.values():
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            _sync_one(path.parent)  # removed meanwhile: its folder names the same device
            continue
        except OSError as err:
            raise storage_error(err, str(path)) or err from err
        try:
            _syncfs(fd)
        except OSError as err:
            raise storage_error(err, str(path)) or err from err
        finally:
            os.close(fd)


def _sync_files(todo: list[Path]) -> None:
    if len(todo) <= 1:
        for path in todo:
            _sync_one(path)
        return
    with ThreadPoolExecutor(min(_SYNC_THREADS, len(todo)), thread_name_prefix="forge-sync") as pool:
        for _ in pool.map(_sync_one, todo):
            pass


def _sync_all(paths: Iterable[Path], *, carried_only: bool = False) -> None:
    """Sync ``paths`` and what earlier rounds carried over, in one round; a round with
    nothing of its own (an empty block's end) leaves the carried paths for a real one,
    unless ``carried_only`` asks for them.

    Rounds of one process run one at a time: a round that returns has made durable what
    was carried into it, even when another thread's round took it along.
    """
    paths = set(paths)
    if not paths and not carried_only:
        return
    with _round_lock:
        with _carried_lock:
            carried = set(_carried)
            _carried.clear()
        todo = sorted(paths | carried)
        try:
            if not todo:
                return
            if _sync_method != "files" and _libc_syncfs() is not None:
                _sync_filesystems(todo)
            else:
                _sync_files(todo)
        except BaseException:
            with _carried_lock:  # not synced after all: the next round tries again
                _carried.update(carried)
            raise


@contextlib.contextmanager
def synced_at_end() -> Iterator[SyncBarrier]:
    """Defer the syncs of this thread's atomic writes to the end of the block.

    Files appear under their names at once, as always; the block's end (or an explicit
    ``barrier.sync()``, e.g. before a step's marker) makes everything written so far
    durable. When the block ends by an exception, its files are still synced, but a
    failed sync does not replace that exception. A nested block joins the outer one.
    """
    outer = _deferred.get()
    if outer is not None:
        yield outer  # the outer block syncs them
        return
    barrier = SyncBarrier()
    token = _deferred.set(barrier)
    ok = False
    try:
        yield barrier
        ok = True
    finally:
        _deferred.reset(token)
        if ok:
            barrier.sync()
        else:
            with contextlib.suppress(BaseException):
                barrier.join()
            with contextlib.suppress(Exception):
                barrier.sync()


@contextlib.contextmanager
def collecting() -> Iterator[SyncBarrier]:
    """Collect the syncs of this thread's atomic writes in a barrier of their own, even
    inside a :func:`synced_at_end` block, and leave them unsynced at the end: the caller
    hands the barrier to whoever commits them (a checkpoint's sidecar, on its thread)."""
    barrier = SyncBarrier()
    token = _deferred.set(barrier)
    try:
        yield barrier
    finally:
        _deferred.reset(token)


def current_barrier() -> SyncBarrier | None:
    """The barrier of the enclosing :func:`synced_at_end` block of this thread, if any."""
    return _deferred.get()


def _defer(barrier: SyncBarrier, dest: Path) -> None:
    """Add ``dest`` to a block's syncs; a folder (a SavedModel) with everything in it."""
    barrier.paths.add(dest)
    if dest.is_dir():
        for base, dirs, files in os.walk(dest):
            barrier.paths.update(Path(base) / name for name in (*dirs, *files))


def sync_file(path: Path) -> None:
    """Make ``path`` (written in place, e.g. appended) durable: now, or at the end of the
    enclosing :func:`synced_at_end` block."""
    barrier = _deferred.get()
    if barrier is not None:
        barrier.paths.add(Path(path))
        return
    _sync_one(Path(path))
    _fsync_dir(Path(path).parent)


def _fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (a new or renamed file) durable; best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``dest`` atomically.

    For files written by other libraries (``torch.save``, Keras, h5py). On error the
    temporary file is removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    with storage_errors(str(dest)):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(dest)
        try:
            yield tmp
            pending = _deferred.get()
            if tmp.is_file() and pending is None:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            if tmp.exists():
                honour_umask(tmp)
            os.replace(tmp, dest)
            if pending is None:
                _fsync_dir(dest.parent)
            else:
                _defer(pending, dest)
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            elif tmp.exists():
                tmp.unlink()


def atomic_write_text(dest: Path, text: str) -> None:
    """Write ``text`` to ``dest`` atomically (UTF-8), synced as :func:`atomic_path` does.

    The small records every step writes go this way, so it makes only the system calls
    the guarantee needs (a step writes a dozen): the temporary is created with mode
    ``0o666``, which the kernel narrows by the umask as for any new file (no ``chmod``,
    unlike a library's file), and the folder is created only when it is missing.
    """
    dest = Path(dest)
    data = text.encode("utf-8")
    pending = _deferred.get()
    with storage_errors(str(dest)):
        tmp = _tmp_name(dest)
        try:
            fd = os.open(tmp, _NEW_FILE, 0o666)
        except FileNotFoundError:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, _NEW_FILE, 0o666)
        try:
            try:
                with memoryview(data) as view:
                    written = 0
                    while written < len(view):
                        written += os.write(fd, view[written:])
                if pending is None:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if pending is None:
            _fsync_dir(dest.parent)
        else:
            _defer(pending, dest)


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it is renamed to ``dest``.

    An existing ``dest`` (an earlier incomplete attempt) is replaced.
    """
    dest = Path(dest)
    with storage_errors(str(dest)):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(dest)
        tmp.mkdir()
        try:
            yield tmp
            honour_umask(tmp)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
            pending = _deferred.get()
            if pending is None:
                _fsync_dir(dest.parent)
            else:
                _defer(pending, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def temporary_writer(name: str) -> int | None:
    """The writer's pid when ``name`` is a temporary Forge created (``.tmp-<pid>-<8 hex>-…``),
    else None: a user's ``.tmp-2024-notes.txt`` is not Forge's."""
    match = _TMP_NAME.match(name)
    return int(match.group(1)) if match else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(directory: Path) -> list[Path]:
    """Remove ``.tmp-<pid>-<id>-…`` entries under ``directory`` whose writing process is gone.

    Sub-folders the step writes itself (``checkpoints/``, ``model/``, ...) are searched too;
    folders of other steps nested inside (they hold a ``.digest``) and symlinks are not.

    Returns:
        The paths removed. Only names Forge itself generates are touched, never user files
        (a user's ``.tmp-notes`` does not match the ``.tmp-<pid>-<8 hex>-`` pattern).
    """
    removed: list[Path] = []
    if not directory.is_dir() or directory.is_symlink():
        return removed
    for entry in directory.iterdir():
        match = _TMP_NAME.match(entry.name)
        if match is None:
            if entry.is_dir() and not entry.is_symlink() and not (entry / _STEP_MARKER).exists():
                removed.extend(clean_leftovers(entry))
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed

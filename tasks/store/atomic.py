"""Atomic writes: a file or directory appears complete or not at all.

Everything is written to a temporary name beside its destination and renamed into place
(``os.replace`` is atomic on POSIX within one file system). Leftover temporaries of a
crashed process carry the ``.tmp-`` prefix and are removed by :func:`clean_leftovers`.
OS errors (disk full, I/O error, read-only directory) become :class:`StorageError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from tasks.errors import StorageError

__all__ = [
    "TMP_PREFIX",
    "atomic_dir",
    "atomic_path",
    "atomic_write_text",
    "clean_leftovers",
    "storage_errors",
    "temporary_writer",
]

TMP_PREFIX = ".tmp-"
# Exactly the names _tmp_name generates: prefix, writer's pid, 8 hex digits, destination name.
_TMP_NAME = re.compile(r"^\.tmp-(\d+)-[0-9a-f]{8}-")
# A folder holding this file belongs to another (nested) step; its own run cleans it.
_STEP_MARKER = ".digest"

_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_HINTS = {
    errno.ENOSPC: "the disk is full; free space and rerun (completed steps are kept)",
    errno.EDQUOT: "the disk quota is exceeded; free space and rerun",
    errno.EFBIG: "the file is larger than allowed (file size limit); raise the limit and rerun",
    errno.EIO: "an I/O error occurred; check the disk and rerun",
    errno.EROFS: "the results directory is read-only; pass a writable --results-dir",
    errno.EACCES: "permission denied; pass a writable --results-dir",
    errno.EPERM: "permission denied; pass a writable --results-dir",
}


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn OS write errors inside the block into one clear :class:`StorageError`."""
    try:
        yield
    except StorageError:
        raise
    except OSError as err:
        hint = _HINTS.get(err.errno or 0, "check the file system and rerun")
        raise StorageError(f"writing {what} failed: {err.strerror or err}; {hint}") from err
    except Exception as err:
        # Writers built on Rust (safetensors) raise their own exception type for OS errors,
        # with the errno only in the message: "... I/O error: File too large (os error 27)".
        match = _RUST_OS_ERROR.search(str(err))
        if match is None:
            raise
        code = int(match.group(1))
        hint = _HINTS.get(code, "check the file system and rerun")
        raise StorageError(f"writing {what} failed: {os.strerror(code)}; {hint}") from err


def _tmp_name(dest: Path) -> Path:
    return dest.with_name(f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{dest.name}")


def _fsync_dir(directory: Path) -> None:
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
            if tmp.is_file():
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            elif tmp.exists():
                tmp.unlink()


def atomic_write_text(dest: Path, text: str) -> None:
    """Write ``text`` to ``dest`` atomically (UTF-8)."""
    with atomic_path(dest) as tmp, storage_errors(str(dest)):
        tmp.write_text(text, encoding="utf-8")


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
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
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

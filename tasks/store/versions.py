"""Memos per file version: what was read from a stored file, reused while the file stays the same.

A file's version is ``(device, inode, size, mtime, ctime, mode)`` from ``lstat``: replacing
it (an atomic rename) changes the inode, writing or truncating it in place changes its
mtime and ctime, ``chmod`` its ctime and mode, swapping in a symbolic link its mode. A file
touched within :data:`RACY_NS` of now may still change within the file system's timestamp
granularity without its version moving (git's "racy" rule), so it is never memoised: it is
simply read again. A memo therefore costs one ``lstat`` per file instead of opening,
reading and parsing it, and never serves what a file held before it changed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["RACY_NS", "Version", "clear_memos", "memoised_read", "stat_version", "versions_of"]

# mtimes this close to "now" may still change within the file system's timestamp
# granularity, so nothing read from such a file is kept.
RACY_NS = 1_000_000_000

Version = tuple[int, int, int, int, int, int]
T = TypeVar("T")

_MAX_ENTRIES = 10_000
_memo: dict[tuple[str, str], tuple[tuple[Version | None, ...], Any]] = {}


def versions_of(paths: Sequence[str]) -> tuple[Version | None, ...] | None:
    """The version of each path (None for one that does not exist), or None when any of
    them cannot be examined or was touched too recently to be trusted."""
    stale_before = time.time_ns() - RACY_NS
    versions: list[Version | None] = []
    for path in paths:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            versions.append(None)
            continue
        except OSError:
            return None
        if st.st_mtime_ns >= stale_before or st.st_ctime_ns >= stale_before:
            return None
        versions.append(stat_version(st))
    return tuple(versions)


def stat_version(st: os.stat_result) -> Version:
    """The version of the file ``st`` describes (see the module doc)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


def memoised_read(kind: str, paths: Sequence[str], read: Callable[[], T]) -> T:
    """``read()``, or what it returned before while every file in ``paths`` (those it
    reads) kept its version.

    The value is shared between callers: ``read`` must return something nobody mutates
    (a frozen record, a tuple, a value only passed on to readers), or callers must copy it.

    Args:
        kind: what is read (one memo per kind and first path).
        paths: the files ``read`` depends on, as strings.
        read: reads and parses them; never memoised while a file is racy.
    """
    versions = versions_of(paths)
    if versions is None:
        return read()
    key = (kind, paths[0])
    hit = _memo.get(key)
    if hit is not None and hit[0] == versions:
        return hit[1]
    value = read()
    if versions_of(paths) == versions:  # nothing changed while it was read
        if len(_memo) >= _MAX_ENTRIES:
            _memo.clear()
        _memo[key] = (versions, value)
    return value


def clear_memos() -> None:
    """Forget every memoised read (a cold start, as a benchmark or a test wants)."""
    _memo.clear()

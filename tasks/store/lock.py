"""One lock for every folder Forge writes: ``flock`` on a ``.lock`` file inside it.

``flock`` locks vanish with the process that holds them, so a killed run never leaves a
stale lock behind, and they work across the processes of one host (and across hosts on
file systems that support them, e.g. NFSv4). Three ways to take one:

* :meth:`FolderLock.hold` waits up to a deadline (a step, a sweep summary writer);
* :meth:`FolderLock.try_hold` takes it only if it is free now (the index, `forge rm`);
* :func:`lock_held` probes without disturbing the holder (`forge ls` showing *running*).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tasks.errors import AlreadyRunningError
from tasks.store.atomic import storage_errors
from tasks.store.names import LOCK_FILE

__all__ = ["FolderLock", "lock_held"]

logger = logging.getLogger("forge")

_POLL_S = 0.05


class FolderLock:
    """The exclusive lock of one folder, through the file ``<folder>/<name>``.

    Args:
        path: the lock file (``<folder>/.lock`` by default via :meth:`of`).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, folder: Path, name: str = LOCK_FILE) -> FolderLock:
        """The lock of ``folder`` (its ``.lock`` file, or ``name`` inside it)."""
        return cls(Path(folder) / name)

    def _open(self) -> int:
        # 0o666 & ~umask: in a group-shared results folder every member can lock it.
        with storage_errors(str(self.path)):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)

    @contextlib.contextmanager
    def hold(
        self,
        timeout: float | None = None,
        *,
        busy: Callable[[], BaseException] | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """Hold the lock for the block, waiting for another holder up to ``timeout`` s.

        Args:
            timeout: seconds to wait; None waits for as long as it takes.
            busy: makes the error raised when the deadline passes (default: an
                :class:`AlreadyRunningError` naming the folder).
            on_wait: called once when the lock is found taken (e.g. to log "waiting").

        Raises:
            AlreadyRunningError: (or what ``busy`` makes) still taken after ``timeout``.
            StorageError: the lock file cannot be created.
        """
        fd = self._open()
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            announced = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise (busy() if busy else self._busy()) from None
                    if not announced and on_wait is not None:
                        on_wait()
                    announced = True
                    time.sleep(_POLL_S if timeout is not None and timeout < 10 else 0.5)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def try_hold(self, timeout: float = 0.0) -> Iterator[bool]:
        """Hold the lock if it can be had within ``timeout`` s; yields whether it was.

        Never raises for a lock that cannot be created (a read-only folder): yields False.
        """
        try:
            fd = self._open()
        except Exception:
            yield False
            return
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.02)
            yield True
        finally:
            os.close(fd)

    def _busy(self) -> AlreadyRunningError:
        return AlreadyRunningError(
            f"{self.path.parent} is in use by another process (lock {self.path.name}); "
            "wait for it to finish or stop it"
        )


def lock_held(folder: Path, name: str = LOCK_FILE) -> bool:
    """Whether another process holds the lock of ``folder`` right now.

    Probes with a shared, non-blocking lock that is released at once, so a running task
    is never disturbed and a crashed one (whose lock vanished with it) reads as free.
    """
    try:
        fd = os.open(Path(folder) / name, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)

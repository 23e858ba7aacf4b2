"""The one folder lock: exclusive across processes, probed without disturbing the holder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tasks.errors import AlreadyRunningError
from tasks.store.lock import FolderLock, lock_held
from tests.support import hold_lock_elsewhere


def test_another_process_holding_the_lock_is_seen_and_waited_for(tmp_path: Path) -> None:
    proc = hold_lock_elsewhere(tmp_path, 60)
    try:
        assert lock_held(tmp_path)
        with pytest.raises(AlreadyRunningError, match=str(tmp_path)):
            with FolderLock.of(tmp_path).hold(timeout=0.2):
                pass
        with FolderLock.of(tmp_path).try_hold(0.1) as ok:
            assert not ok
    finally:
        proc.kill()
        proc.wait()
    # The lock vanished with the killed process: nothing stale is left behind.
    assert not lock_held(tmp_path)
    with FolderLock.of(tmp_path).hold(timeout=1):
        pass


def test_hold_waits_until_the_holder_is_done(tmp_path: Path) -> None:
    proc = hold_lock_elsewhere(tmp_path, 2.0)  # ample time to start waiting
    waited: list[bool] = []
    start = time.monotonic()
    with FolderLock.of(tmp_path).hold(timeout=30, on_wait=lambda: waited.append(True)):
        assert time.monotonic() - start > 0.2 and waited == [True]
    proc.wait()


def test_lock_file_honours_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        with FolderLock.of(tmp_path).hold():
            pass
    finally:
        os.umask(old)
    assert (tmp_path / ".lock").stat().st_mode & 0o777 == 0o664


def test_probe_of_a_folder_without_a_lock_file_is_false(tmp_path: Path) -> None:
    assert not lock_held(tmp_path / "nowhere")

"""What a sweep shard does once its experiments ran: its record and the sync of its last
markers, in one round."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import luigi
import pytest

from tasks.store import atomic
from tasks.sweep import Sweep
from tests.sweeps.helpers import tiny_sweep

pytestmark = pytest.mark.slow


def test_a_shards_record_is_synced_in_one_round_with_its_last_marker(
    tmp_path: Path, results_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if atomic._libc_syncfs() is None:
        pytest.skip("syncfs (Linux 5.8+) is not available here: rounds fsync every file")
    rounds: list[set[Path]] = []
    real_round = atomic._sync_all

    def spy_round(paths: Iterable[Path], *, carried_only: bool = False) -> None:
        paths = set(paths)
        with atomic._carried_lock:
            taken = paths | atomic._carried
        if taken:
            rounds.append(set(taken))
        real_round(paths, carried_only=carried_only)

    fsynced: list[str] = []
    real_fsync = os.fsync

    def spy_fsync(fd: int) -> None:
        fsynced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(atomic, "_sync_all", spy_round)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    sweep = tiny_sweep(tmp_path, "{train.seed: [0, 1]}")
    task = Sweep(sweep_config=str(sweep), results_dir=str(results_dir), shards=1)
    assert luigi.build([task], local_scheduler=True)

    (record,) = results_dir.glob("sweeps/*/shards/0000-of-0001.json")
    markers = sorted(results_dir.glob("*/*/*/eval/*/_SUCCESS"), key=lambda p: p.stat().st_mtime_ns)
    assert len(markers) == 2
    with_record = [r for r in rounds if record in r]
    # One round makes the record and the last experiment's marker (carried from its
    # Evaluate step) durable together.
    assert len(with_record) == 1 and markers[-1] in with_record[0]
    # The record is not synced on its own (an fsync of the file and one of its folder).
    assert not [p for p in fsynced if p.endswith(record.name)]
    assert not atomic._carried  # nothing is left waiting for a round


def test_a_shard_run_that_found_its_work_done_keeps_the_record_of_the_run_that_did_it(
    tmp_path: Path, results_dir: Path
) -> None:
    """An identical command that reaches a shard after another process finished it (both
    scheduled it while it was incomplete) must not replace that process's record with an
    empty one."""
    from tasks.sweep import SweepShard

    sweep = tiny_sweep(tmp_path, "{train.seed: [0, 1]}")
    task = Sweep(sweep_config=str(sweep), results_dir=str(results_dir), shards=1)
    assert luigi.build([task], local_scheduler=True)
    (record,) = results_dir.glob("sweeps/*/shards/0000-of-0001.json")
    before = record.read_text()
    assert '"ran": [\n' in before or '"ran": ["' in before.replace("\n", ""), before

    (shard,) = task.shard_tasks()
    assert isinstance(shard, SweepShard)
    shard.run()  # what the late command does: every experiment is done already
    assert record.read_text() == before

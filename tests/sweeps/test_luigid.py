"""Sweeps on a real ``luigid`` with several single-process worker commands on one host.

Each worker command runs with ``--workers 1``, so Luigi runs its tasks in the command's
own process and the pid in an experiment's ``runs.jsonl`` names the worker command that
trained it: "each worker took work" is read from the run records, not from forks.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.reliability.crashkit import pause_at, pausing_model
from tests.sweeps.helpers import (
    attempts,
    evaluated,
    running_luigid,
    start_worker,
    summary_rows,
    tiny_search,
    tiny_sweep,
    training_pids,
    trial_rows,
)

pytestmark = pytest.mark.slow


def _every_pid(results_dir: Path) -> set[int]:
    return {pid for pids in training_pids(results_dir).values() for pid in pids}


def test_two_identical_worker_commands_share_a_sweep_and_exit_zero(
    tmp_path: Path, results_dir: Path
) -> None:
    sweep = tiny_sweep(
        tmp_path, "{model.params.hidden: [[8], [16]], train.seed: [0, 1, 2]}", epochs=5
    )
    with running_luigid(tmp_path / "luigid") as port:
        workers = [
            start_worker(sweep, results_dir, port, tmp_path / f"worker{i}.log") for i in range(2)
        ]
        try:
            codes = [w.wait() for w in workers]
        finally:
            for w in workers:
                w.stop()
    logs = "\n".join(w.output() for w in workers)
    # Identical command lines: Luigi's pid lock would make the second exit at once (10).
    assert codes == [0, 0], logs
    assert len(evaluated(results_dir)) == 6
    runs = attempts(results_dir)
    assert len(runs) == 6
    for experiment, lines in runs.items():
        assert [line["status"] for line in lines] == ["running", "done"], experiment
    pids = _every_pid(results_dir)
    for worker in workers:
        assert worker.pid in pids, f"worker {worker.pid} trained nothing: {pids}\n{logs}"
    assert pids <= {w.pid for w in workers}
    assert all(r["status"] == "done" for r in summary_rows(results_dir))
    assert list((results_dir / "sweeps").glob("*/_SUCCESS"))


def test_worker_leaving_an_incomplete_sweep_exits_non_zero(
    tmp_path: Path, results_dir: Path
) -> None:
    # The busy worker holds at its first training batch until the leaving worker is gone.
    model = pausing_model("torch", tmp_path)
    sweep = tiny_sweep(tmp_path, "{train.seed: [0, 1, 2]}", models=(model,), epochs=2)
    hold = pause_at(tmp_path, 1, release=True)
    with running_luigid(tmp_path / "luigid") as port:
        busy = start_worker(
            sweep, results_dir, port, tmp_path / "busy.log", "--shards", "1", env=hold
        )
        try:
            deadline = time.monotonic() + 120
            while not Path(hold["PAUSE_FILE"]).exists():
                assert busy.proc.poll() is None, busy.output()
                assert time.monotonic() < deadline, "the first worker never started training"
                time.sleep(0.1)
            # Nothing left to take, and it does not wait: the sweep is not complete.
            leaving = start_worker(
                sweep,
                results_dir,
                port,
                tmp_path / "leaving.log",
                "--shards",
                "1",
                keep_alive=False,
                env={"FORGE_PLUGINS": hold["FORGE_PLUGINS"]},
            )
            left = leaving.wait()
            still_running = busy.proc.poll() is None
            Path(hold["PAUSE_RELEASE"]).touch()
            finished = busy.wait()
        finally:
            busy.stop()
    assert still_running, "the first worker had finished; nothing was tested"
    assert left != 0, leaving.output()
    assert finished == 0, busy.output()
    assert leaving.pid not in _every_pid(results_dir)
    assert len(evaluated(results_dir)) == 3


def test_replacement_worker_takes_over_a_killed_workers_shard_within_a_minute(
    tmp_path: Path, results_dir: Path
) -> None:
    sweep = tiny_sweep(tmp_path, "{train.seed: [0, 1, 2, 3]}", epochs=10)
    with running_luigid(tmp_path / "luigid") as port:
        victim = start_worker(sweep, results_dir, port, tmp_path / "victim.log", "--shards", "2")
        other = start_worker(sweep, results_dir, port, tmp_path / "other.log", "--shards", "2")
        workers = [victim, other]
        try:
            deadline = time.monotonic() + 180
            while not any(
                lines[-1]["status"] == "running" and lines[-1]["pid"] == victim.pid
                for lines in attempts(results_dir).values()
            ):
                assert victim.proc.poll() is None, victim.output()
                assert time.monotonic() < deadline, "the victim never started training"
                time.sleep(0.05)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            killed_at = time.monotonic()
            replacement = start_worker(
                sweep, results_dir, port, tmp_path / "replacement.log", "--shards", "2"
            )
            workers.append(replacement)
            codes = [other.wait(), replacement.wait()]
            took = time.monotonic() - killed_at
        finally:
            for w in workers:
                w.stop()
    assert codes == [0, 0], other.output() + replacement.output()
    assert len(evaluated(results_dir)) == 4
    assert list((results_dir / "sweeps").glob("*/_SUCCESS"))
    # Shipped scheduler settings: a dead worker's shard is handed out again in seconds.
    assert took < 90, f"the sweep took {took:.0f} s after the kill"
    runs = attempts(results_dir)
    assert all(lines[-1]["status"] == "done" for lines in runs.values())
    (killed,) = [lines for lines in runs.values() if lines[0]["pid"] == victim.pid]
    assert [line["status"] for line in killed] == ["running", "running", "done"], killed
    assert killed[1]["pid"] in {other.pid, replacement.pid}
    restarted = datetime.fromisoformat(str(killed[1]["start"]))
    died = datetime.fromisoformat(str(killed[0]["start"]))
    assert (restarted - died).total_seconds() < 75, "the dead worker's shard stalled"


def test_two_identical_worker_commands_share_a_search(tmp_path: Path, results_dir: Path) -> None:
    search = tiny_search(tmp_path, trials=6, epochs=8, sampler="random")
    with running_luigid(tmp_path / "luigid") as port:
        workers = [
            start_worker(search, results_dir, port, tmp_path / f"worker{i}.log") for i in range(2)
        ]
        try:
            codes = [w.wait() for w in workers]
        finally:
            for w in workers:
                w.stop()
    logs = "\n".join(w.output() for w in workers)
    assert codes == [0, 0], logs
    rows = trial_rows(results_dir)
    assert sorted(r["trial"] for r in rows) == list(range(6)), rows
    assert all(r["state"] == "complete" for r in rows), rows
    runs = attempts(results_dir)
    for experiment, lines in runs.items():  # each trial's experiment trained once
        assert [line["status"] for line in lines] == ["running", "done"], experiment
    pids = _every_pid(results_dir)
    for worker in workers:
        assert worker.pid in pids, f"worker {worker.pid} ran no trial: {pids}\n{logs}"
    assert list((results_dir / "sweeps").glob("*/_SUCCESS"))

"""Concurrency: the same experiment started twice at once trains once; dead locks do not block.

Two ``luigi ... --local-scheduler`` commands have no luigid to arbitrate. Forge's step lock
(``flock`` on ``<step dir>/.lock``, see tasks/base.py) makes the second wait, and the
re-check of ``complete()`` under the lock makes it skip the work the first one finished.
``flock`` locks die with their process, so a ``kill -9`` never leaves a lock that blocks.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from tests.reliability.crashkit import (
    check_checkpoints_load,
    checkpoint_committed,
    experiment_dir,
    load_weights_file,
    lock_is_free,
    log_events,
    metric_epochs,
    run_luigi_to_end,
    start_luigi,
    train_args,
    wait_until,
)

EPOCHS = 3
ARGS = train_args("torch", f"train.epochs={EPOCHS} train.batch_size=16")
REORDERED = train_args("torch", f"train.batch_size=16 train.epochs={EPOCHS}")


def _attempts(exp: Path) -> list[dict[str, object]]:
    path = exp / "runs.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_two_simultaneous_runs_train_once(tmp_path: Path) -> None:
    """Both commands succeed; every step (data, model, training) ran exactly once."""
    results = tmp_path / "results"
    # The second command spells the same experiment differently (other order of overrides),
    # so nothing but Forge's own step lock can keep the two apart.
    first = start_luigi("Train", ARGS, results, tmp_path / "first.log")
    second = start_luigi("Train", REORDERED, results, tmp_path / "second.log")
    assert first.wait() == 0, first.output()
    assert second.wait() == 0, second.output()
    exp = experiment_dir(results)
    assert exp is not None and (exp / "_SUCCESS").is_file()
    trained, resumed = log_events((exp / "train.log").read_text())
    assert trained == list(range(1, EPOCHS + 1)), f"training ran more than once: {trained}"
    assert resumed == []
    attempts = _attempts(exp)
    assert [a["status"] for a in attempts] == ["running", "done"], attempts
    assert metric_epochs(exp) == list(range(1, EPOCHS + 1))
    # And the result is sound: weights load, config is the resolved one.
    check_checkpoints_load(exp, "torch")
    assert load_weights_file(exp / "model" / "last.safetensors")


@pytest.mark.slow
def test_lock_of_a_killed_process_does_not_block(tmp_path: Path) -> None:
    """kill -9 while holding the step lock: the kernel drops it, the rerun goes ahead."""
    results = tmp_path / "results"
    args = train_args("torch", "train.epochs=40 train.batch_size=8")
    running = start_luigi("Train", args, results, tmp_path / "a.log")

    assert wait_until(checkpoint_committed(results, 1), running.proc), running.output()
    exp = experiment_dir(results)
    assert exp is not None
    assert not lock_is_free(exp / ".lock"), "a running Train must hold its lock"
    running.kill()
    assert (exp / ".lock").exists(), "the lock file stays behind, as after any crash"
    assert lock_is_free(exp / ".lock"), "the kernel releases flock locks of dead processes"
    # A rerun that would fail fast if the lock were still held gets through.
    cfg = tmp_path / "luigi.cfg"
    cfg.write_text("[core]\nlog_level = INFO\n[forge]\nlock_timeout = 0\n")
    code, out = run_luigi_to_end(
        "Train",
        args,
        results,
        tmp_path / "b.log",
        env={"LUIGI_CONFIG_PATH": str(cfg)},
    )
    assert code == 0, out
    assert "resuming from checkpoint" in (exp / "train.log").read_text()


@pytest.mark.slow
def test_held_lock_fails_fast_with_already_running(tmp_path: Path) -> None:
    """With ``lock_timeout = 0`` a step locked by a live process fails with one clear line."""
    results = tmp_path / "results"
    code, out = run_luigi_to_end("BuildModel", ARGS, results, tmp_path / "build.log")
    assert code == 0, out
    cfg = tmp_path / "luigi.cfg"
    cfg.write_text("[core]\nlog_level = INFO\n[forge]\nlock_timeout = 0\n")
    # Let Train claim its directory, stop it, then hold the step lock from this process.
    first = start_luigi("Train", ARGS, results, tmp_path / "first.log")
    assert wait_until(lambda: experiment_dir(results) is not None, first.proc)
    first.kill()
    exp = experiment_dir(results)
    assert exp is not None
    fd = os.open(exp / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, out = run_luigi_to_end(
            "Train", ARGS, results, tmp_path / "second.log", env={"LUIGI_CONFIG_PATH": str(cfg)}
        )
    finally:
        os.close(fd)
    assert code != 0
    assert out.count("AlreadyRunningError:") == 1, out
    assert "is already running in another process" in out
    assert "Traceback" not in out
    assert not (exp / "_SUCCESS").exists()

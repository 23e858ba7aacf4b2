"""Preemption through the real ``luigi`` command: SIGUSR1 (Slurm) or SIGTERM (preemptible
machines) makes a running Train write a checkpoint and exit non-zero within seconds, and
rerunning the same command resumes from that checkpoint without repeating an epoch."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.reliability.crashkit import (
    checkpoint_committed,
    committed_epochs,
    experiment_dir,
    metric_epochs,
    run_luigi_to_end,
    start_luigi,
    train_args,
    wait_until,
)

pytestmark = pytest.mark.slow

EPOCHS = 60
ARGS = train_args("torch", f"train.epochs={EPOCHS} train.batch_size=16")


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM], ids=["SIGUSR1", "SIGTERM"])
def test_signal_checkpoints_exits_non_zero_and_rerun_resumes(
    tmp_path: Path, sig: signal.Signals
) -> None:
    results = tmp_path / "results"
    running = start_luigi("Train", ARGS, results, tmp_path / "first.log")
    assert wait_until(checkpoint_committed(results, 2), running.proc), running.output()
    os.kill(running.proc.pid, sig)
    sent = time.monotonic()
    code = running.wait(timeout=60)
    took = time.monotonic() - sent
    out = running.output()
    assert code != 0, out
    assert took < 15, f"exit took {took:.1f} s after {sig.name}"
    assert out.count("PreemptedError:") == 1 and sig.name in out, out
    assert "Traceback" not in out
    exp = experiment_dir(results)
    assert exp is not None and not (exp / "_SUCCESS").exists()
    stopped_at = metric_epochs(exp)
    assert stopped_at and stopped_at[-1] < EPOCHS, "the signal did not stop training"
    # The epoch it stopped after is checkpointed, whatever checkpoint_every says.
    assert committed_epochs(exp)[-1] == stopped_at[-1]
    run = json.loads((exp / "run.json").read_text())
    assert run["status"] == "failed" and run["end_reason"] == "preempted", run

    code, out = run_luigi_to_end("Train", ARGS, results, tmp_path / "second.log")
    assert code == 0, out
    assert metric_epochs(exp) == list(range(1, EPOCHS + 1)), "an epoch was repeated or lost"
    assert f"resuming from checkpoint epoch-{stopped_at[-1]:04d}" in (exp / "train.log").read_text()

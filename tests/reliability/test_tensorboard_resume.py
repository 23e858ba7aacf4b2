"""TensorBoard steps are not duplicated after a resume.

A Train checkpointing every second epoch is killed once epoch 3 was logged
(its checkpoint 2 committed, 4 not yet). The rerun resumes from epoch 2 and trains epoch
3 again: the event files, read with TensorBoard's own ``EventAccumulator`` (orphan purging
off, so the files are read as they are), must hold every epoch's scalars exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.reliability.crashkit import (
    committed_epochs,
    experiment_dir,
    metric_epochs,
    run_luigi_to_end,
    start_luigi,
    train_args,
    wait_until,
)
from tests.support import FRAMEWORKS

EPOCHS = 6


def logged_steps(logdir: Path, tag: str = "loss") -> list[int]:
    """Every step of ``tag`` in every event file of ``logdir``, as TensorBoard reads them."""
    steps: list[int] = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), purge_orphaned_data=False)
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            steps += [event.step for event in acc.Scalars(tag)]
    return sorted(steps)


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_epoch_is_logged_once_after_a_kill_and_resume(framework: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    # Small batches make an epoch take long enough to stop between epochs 3 and 4.
    args = train_args(
        framework, f"train.epochs={EPOCHS} train.batch_size=1 train.checkpoint_every=2"
    )
    running = start_luigi("Train", args, results, tmp_path / "first.log")

    def epoch_3_done() -> bool:  # metrics.csv: cheap to poll; TensorBoard follows at once
        exp = experiment_dir(results)
        return exp is not None and 3 in metric_epochs(exp)

    assert wait_until(epoch_3_done, running.proc), running.output()
    time.sleep(0.2)  # its scalars are flushed right after the row; epoch 4 takes far longer
    running.kill()
    exp = experiment_dir(results)
    assert exp is not None
    assert committed_epochs(exp) == [2], "the kill must come before checkpoint 4"
    assert 3 in logged_steps(exp / "tensorboard")  # what the rerun will log again

    code, out = run_luigi_to_end("Train", args, results, tmp_path / "rerun.log")
    assert code == 0, out
    assert "resuming from checkpoint epoch-0002" in (exp / "train.log").read_text()
    steps = logged_steps(exp / "tensorboard")
    twice = sorted(step for step, n in Counter(steps).items() if n > 1)
    assert twice == [], f"epochs logged more than once: {twice}"
    assert steps == list(range(1, EPOCHS + 1))

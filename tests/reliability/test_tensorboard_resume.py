"""TensorBoard steps are not duplicated after a resume.

A Train checkpointing every second epoch is killed once epoch 3 was logged (its
checkpoint 2 committed, 4 not yet): the pausing plugin model holds it at the first batch
of epoch 4, and epoch 3 lasts over a second, so its scalars are flushed. The rerun
resumes from epoch 2 and trains epoch 3 again: the event files, read with TensorBoard's
own ``EventAccumulator`` (orphan purging off, so the files are read as they are), must
hold every epoch's scalars exactly once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.reliability.crashkit import (
    checkpoint_committed,
    committed_epochs,
    experiment_dir,
    metric_epochs,
    pausing,
    run_luigi_to_end,
    start_luigi,
    train_args,
    wait_until,
)
from tests.support import FRAMEWORKS

EPOCHS = 6
BATCH = 8


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
    args = train_args(
        framework, f"train.epochs={EPOCHS} train.batch_size={BATCH} train.checkpoint_every=2"
    )
    pause = pausing(framework, args, tmp_path, after_epoch=3, batch_size=BATCH, stall_epoch=3)
    running = start_luigi("Train", pause.args, results, tmp_path / "first.log", env=pause.env)
    assert wait_until(pause.reached, running.proc), running.output()
    assert wait_until(checkpoint_committed(results, 2), running.proc), running.output()
    running.kill()
    exp = experiment_dir(results)
    assert exp is not None
    assert metric_epochs(exp) == [1, 2, 3], "the run must hold at the start of epoch 4"
    assert committed_epochs(exp) == [2], "the kill must come before checkpoint 4"
    assert 3 in logged_steps(exp / "tensorboard")  # what the rerun will log again

    code, out = run_luigi_to_end(
        "Train", pause.args, results, tmp_path / "rerun.log", env=pause.plain_env
    )
    assert code == 0, out
    assert "resuming from checkpoint epoch-0002" in (exp / "train.log").read_text()
    steps = logged_steps(exp / "tensorboard")
    twice = sorted(step for step, n in Counter(steps).items() if n > 1)
    assert twice == [], f"epochs logged more than once: {twice}"
    assert steps == list(range(1, EPOCHS + 1))

"""``train.checkpoint_min_interval_s`` through the ``luigi`` command: a young checkpoint is
skipped, and with 0 every epoch is checkpointed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.crashkit import (
    checkpoint_committed,
    committed_epochs,
    experiment_dir,
    pausing,
    start_luigi,
    train_args,
    wait_until,
)


@pytest.mark.slow
@pytest.mark.parametrize(("interval", "written"), [("1000", []), ("0", [2])])
def test_the_minimum_interval_decides_whether_an_epoch_is_checkpointed(
    tmp_path: Path, interval: str, written: list[int]
) -> None:
    """Held at the first batch of epoch 3: epoch 2's checkpoint exists only without a
    minimum interval. Either way the last epoch's checkpoint is the one kept."""
    results = tmp_path / "results"
    overrides = f"train.epochs=3 train.batch_size=16 train.checkpoint_min_interval_s={interval}"
    args = train_args("torch", overrides, every_epoch=False)
    pause = pausing("torch", args, tmp_path, after_epoch=2, batch_size=16, release=True)
    running = start_luigi("Train", pause.args, results, tmp_path / "train.log", env=pause.env)
    assert wait_until(pause.reached, running.proc), running.output()
    if written:
        assert wait_until(checkpoint_committed(results, 2), running.proc), running.output()
    exp = experiment_dir(results)
    assert exp is not None
    # A checkpoint is written on the training thread before the next epoch starts (its
    # commit may follow on another): nothing of one that was skipped exists.
    # (Epoch 1's files may still be there: pruned after epoch 2's commit.)
    found = {int(p.name.split("epoch-")[1][:4]) for p in (exp / "checkpoints").glob("*epoch-*")}
    assert found >= set(written) if written else found == set()
    pause.release()
    assert running.wait() == 0, running.output()
    assert committed_epochs(exp) == [3]

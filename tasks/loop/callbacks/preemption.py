"""Preemption: on SIGUSR1/SIGTERM, stop after the current optimizer step and checkpoint."""

from __future__ import annotations

from tasks import preemption
from tasks.loop.loop import PREEMPTED, Callback, Loop

__all__ = ["Preemption"]


class Preemption(Callback):
    """Stops the loop as ``preempted`` once a stop signal arrived (see
    :mod:`tasks.preemption`).

    It hands the loop the live list of stop requests (:attr:`Loop.interrupt`), which the
    loop checks after every training batch: inside an epoch it stops after the current
    optimizer step and :class:`Checkpointing` writes a partial checkpoint. A signal
    during the epoch's last batches or its validation stops at the epoch's end instead,
    here; placed before :class:`Checkpointing`, which then writes that epoch's
    checkpoint. Train turns the ending into a ``PreemptedError`` (non-zero exit), and a
    rerun resumes from the checkpoint.
    """

    def on_train_begin(self, loop: Loop) -> None:
        loop.interrupt = preemption.requests()

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        if preemption.stop_requested():
            loop.stop(PREEMPTED)

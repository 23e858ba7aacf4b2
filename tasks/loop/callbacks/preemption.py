"""Preemption: on SIGUSR1/SIGTERM, checkpoint the epoch just finished and stop."""

from __future__ import annotations

from tasks import preemption
from tasks.loop.loop import PREEMPTED, Callback, Loop

__all__ = ["Preemption"]


class Preemption(Callback):
    """Asks the loop to stop as ``preempted`` once a stop signal arrived (see
    :mod:`tasks.preemption`). Placed before :class:`Checkpointing`, which then writes this
    epoch's checkpoint; Train turns the ending into a ``PreemptedError`` (non-zero exit)
    and a rerun resumes from the checkpoint."""

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        if preemption.stop_requested():
            loop.stop(PREEMPTED)

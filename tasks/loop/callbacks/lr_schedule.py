"""Sets the scheduled learning rate on the optimizer before every epoch (or step)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.loop.loop import Callback, Loop
from tasks.loop.schedules import Schedule

__all__ = ["LRSchedule"]


class LRSchedule(Callback):
    """Drives a :class:`~tasks.loop.schedules.Schedule`; its state goes into checkpoints.

    Runs first among the callbacks, so the rate of an epoch is set before it trains and
    the loop records it as that epoch's ``lr``.
    """

    key = "scheduler"

    def __init__(self, schedule: Schedule, accumulate: int = 1) -> None:
        self.schedule = schedule
        self.accumulate = accumulate
        self._epoch = 0

    def on_epoch_begin(self, loop: Loop, epoch: int) -> None:
        self._epoch = epoch - 1
        steps = 0
        if self.schedule.per_step and loop.partial is not None:  # a resumed epoch
            steps = loop.partial["batches"] // self.accumulate
        loop.session.set_learning_rate(self.schedule.lr(self._epoch, steps))

    def on_batch_end(self, loop: Loop, epoch: int, index: int, scalars: Mapping[str, Any]) -> None:
        if self.schedule.per_step and (index + 1) % self.accumulate == 0:
            steps = (index + 1) // self.accumulate
            loop.session.set_learning_rate(self.schedule.lr(self._epoch, steps))

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        self.schedule.observe(epoch, logs)

    def state(self) -> dict[str, Any]:
        return self.schedule.state()

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.schedule.load_state(state)

"""``metrics.csv``: one row per epoch, appended as training goes, synced before the
checkpoint that covers it commits and at the end of training."""

from __future__ import annotations

from pathlib import Path

from tasks.loop.loop import Callback, Loop
from tasks.store.metrics_log import MetricsLog

__all__ = ["MetricsCsv"]


class MetricsCsv(Callback):
    """Appends every epoch's logs and ``lr`` (the rate the epoch started with).

    A resumed run first trims the rows after its checkpoint.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log: MetricsLog | None = None

    def on_train_begin(self, loop: Loop) -> None:
        self.log = MetricsLog(self.path, resume_after=loop.epoch)

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        assert self.log is not None  # on_train_begin ran
        self.log.append(epoch, {**logs, "lr": loop.lr})

    def sync(self) -> None:
        """Make the rows appended so far durable (any thread; a no-op before the first)."""
        if self.log is not None:
            self.log.sync()

    def on_train_end(self, loop: Loop) -> None:
        self.sync()

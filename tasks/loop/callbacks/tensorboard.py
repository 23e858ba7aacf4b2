"""TensorBoard scalars, one step per epoch, through the backend's event-file writer."""

from __future__ import annotations

import time

from tasks.backends.base import ScalarWriter
from tasks.loop.loop import Callback, Loop

__all__ = ["FLUSH_SECONDS", "TensorBoard"]

# Event files are flushed at most this often while training (and always when it ends):
# a live TensorBoard lags by at most this much, and epochs of a few milliseconds do not
# each pay a write. metrics.csv, not the event file, is the experiment's record.
FLUSH_SECONDS = 1.0


class TensorBoard(Callback):
    """Writes every epoch's logs as scalars; the writer is closed however training ends."""

    def __init__(self, writer: ScalarWriter) -> None:
        self.writer = writer
        self._flushed: float | None = None

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        now = time.monotonic()
        flush = self._flushed is None or now - self._flushed >= FLUSH_SECONDS
        self.writer.add_scalars(epoch, {**logs, "lr": loop.lr}, flush=flush)
        if flush:
            self._flushed = now

    def close(self) -> None:
        self.writer.close()

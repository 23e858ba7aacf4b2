"""TensorBoard scalars, one step per epoch, through the backend's event-file writer."""

from __future__ import annotations

from tasks.backends.base import ScalarWriter
from tasks.loop.loop import Callback, Loop

__all__ = ["TensorBoard"]


class TensorBoard(Callback):
    """Writes every epoch's logs as scalars; the writer is closed however training ends."""

    def __init__(self, writer: ScalarWriter) -> None:
        self.writer = writer

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        self.writer.add_scalars(epoch, {**logs, "lr": loop.lr})

    def close(self) -> None:
        self.writer.close()

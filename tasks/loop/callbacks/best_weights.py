"""Best-weights selection: ``checkpoints/best-NNNN``, then ``model/best.*`` and ``best.json``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError
from tasks.loop.loop import Callback, Loop
from tasks.store.atomic import atomic_path
from tasks.store.checkpoints import best_path, improves
from tasks.store.names import MODEL_DIR
from tasks.store.records import BestRecord

__all__ = ["BestWeights"]


class BestWeights(Callback):
    """Keeps the weights of the epoch whose ``monitor`` is best so far (``mode`` min/max).

    Args:
        directory: the experiment folder.
        suffix: the backend's weights-file suffix.
        source: the train config's name, for the error about an unknown monitor.

    When the session can copy its weights, an improvement is only copied in memory: the
    file is written by whoever commits the next checkpoint (:meth:`take_unwritten`, on the
    checkpoint thread, before the sidecar naming it) or at the end of training, so the
    training thread never waits for it. A committed checkpoint therefore always finds the
    best weights it names on disk.
    """

    key = "best"

    def __init__(
        self, directory: Path, suffix: str, monitor: str, mode: str, source: str = ""
    ) -> None:
        self.directory = directory
        self.suffix = suffix
        self.monitor = monitor
        self.mode = mode
        self.source = source
        self.epoch: int | None = None
        self.value: float | None = None
        self._unwritten: tuple[int, Callable[[Path], None]] | None = None
        self.adopted = False  # a Checkpointing finishes this callback after its last write

    def state(self) -> dict[str, Any]:
        return {"best_epoch": self.epoch, "best_value": self.value}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.epoch = state.get("best_epoch")
        self.value = state.get("best_value")

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        if self.monitor not in logs:
            raise ConfigError(
                f"train config {self.source}: key 'monitor' is {self.monitor!r}, but training "
                f"logs only {sorted(logs)}; set monitor to one of them"
            )
        value = float(logs[self.monitor])
        if improves(value, self.value, self.mode):
            writer = loop.session.weights_writer()
            if writer is None:
                self._write(epoch, loop.session.save_weights)
            else:
                self._unwritten = (epoch, writer)
            # The previous best file stays until a checkpoint naming this one is
            # committed: resuming from an older checkpoint still needs it.
            self.epoch, self.value = epoch, value

    def _write(self, epoch: int, writer: Callable[[Path], None]) -> None:
        with atomic_path(best_path(self.directory, epoch, self.suffix)) as tmp:
            writer(tmp)

    def take_unwritten(self) -> Callable[[], None] | None:
        """The write of the best weights not on disk yet (None: all are), handed to the
        checkpoint that will name them; it may run on another thread."""
        pending, self._unwritten = self._unwritten, None
        if pending is None:
            return None
        epoch, writer = pending
        return lambda: self._write(epoch, writer)

    def on_train_end(self, loop: Loop) -> None:
        if not self.adopted:
            self.finish()

    def finish(self) -> None:
        """Write what is still unwritten, then ``model/best.*`` and ``best.json``."""
        write = self.take_unwritten()
        if write is not None:
            write()
        if self.epoch is not None:
            source = best_path(self.directory, self.epoch, self.suffix)
            with atomic_path(self.directory / MODEL_DIR / f"best{self.suffix}") as tmp:
                tmp.write_bytes(source.read_bytes())
        BestRecord(epoch=self.epoch, monitor=self.monitor, mode=self.mode, value=self.value).write(
            self.directory
        )

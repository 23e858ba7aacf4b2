"""Epoch checkpoints: ``checkpoints/epoch-NNNN.<ext>``, committed by their sidecar."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tasks.loop.callbacks.best_weights import BestWeights
from tasks.loop.loop import Callback, Loop
from tasks.store.atomic import atomic_path, synced_at_end
from tasks.store.checkpoints import (
    checkpoint_path,
    commit,
    commit_partial,
    partial_path,
    prune,
    retain,
)

__all__ = ["Checkpointing"]

logger = logging.getLogger("forge")


class Checkpointing(Callback):
    """Saves a resumable checkpoint every ``every`` epochs, at the last and at a stop,
    keeping the newest ``keep`` (all when None) and the best weights they refer to.

    A checkpoint counts once its sidecar is written, after the checkpoint itself is fully
    written and synced; the sidecar holds the loop's state (best so far, schedule, early
    stopping, why training stopped), so a resumed run continues exactly, and a run that
    stopped early stays stopped.

    The state is copied when the epoch ends and written by one background thread while
    the next epoch trains (when the session can snapshot its state); the next checkpoint,
    and the end of training, first wait for it, so at most one write is in flight, they
    commit in order, and a write's error surfaces there.

    Before the sidecar commits, the same thread writes the best weights the checkpoint
    names if they are still only in memory (:meth:`BestWeights.take_unwritten`) and runs
    ``before_commit`` (e.g. syncing metrics.csv), so what a checkpoint promises is durable
    when it counts, without the training thread waiting for any of it. The best weights
    are finished (``model/best.*``, ``best.json``) after the last checkpoint is written.
    """

    def __init__(
        self,
        directory: Path,
        suffix: str,
        every: int,
        best: BestWeights | None = None,
        keep: int | None = None,
        background: bool = True,
        before_commit: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.directory = directory
        self.suffix = suffix
        self.every = every
        self.best = best
        self.keep = keep
        self.background = background
        self.before_commit = list(before_commit)
        if best is not None:
            best.adopted = True
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        if self._pending is not None and self._pending.done():
            self.wait()  # a failed background write stops training at the next epoch end
        if not (epoch % self.every == 0 or epoch >= loop.epochs or loop.stop_reason):
            return
        write = loop.session.checkpoint_writer(epoch)
        bookkeeping = {**(self.best.state() if self.best else {}), "loop": loop.state()}
        write_best = self.best.take_unwritten() if self.best else None
        self.wait()
        if not (self.background and loop.session.snapshots):
            self._commit(write, epoch, bookkeeping, write_best)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="forge-checkpoint")
        self._pending = self._pool.submit(self._commit, write, epoch, bookkeeping, write_best)

    def _commit(
        self,
        write: Callable[[Path], None],
        epoch: int,
        bookkeeping: dict[str, Any],
        write_best: Callable[[], None] | None,
    ) -> None:
        self._write_then_commit(
            checkpoint_path(self.directory, epoch, self.suffix),
            write,
            write_best,
            lambda: commit(self.directory, epoch, self.suffix, bookkeeping),
        )
        keep_best = bookkeeping.get("best_epoch")
        if self.keep is not None:
            keep_best = retain(self.directory, self.keep)
        prune(self.directory, keep_best=keep_best)

    def on_interrupt(self, loop: Loop, epoch: int) -> None:
        """A stop inside ``epoch``: write its partial checkpoint (the epochs before it and
        ``loop.state()["partial"]``) now, after the pending one; it never counts as a
        finished epoch, so retention and best weights are left as they are."""
        write = loop.session.checkpoint_writer(epoch - 1)
        bookkeeping = {**(self.best.state() if self.best else {}), "loop": loop.state()}
        write_best = self.best.take_unwritten() if self.best else None
        self.wait()
        self._write_then_commit(
            partial_path(self.directory, epoch, self.suffix),
            write,
            write_best,
            lambda: commit_partial(self.directory, epoch, self.suffix, bookkeeping),
        )

    def _write_then_commit(
        self,
        path: Path,
        write: Callable[[Path], None],
        write_best: Callable[[], None] | None,
        commit_sidecar: Callable[[], None],
    ) -> None:
        """Write the checkpoint file, the best weights it names and ``before_commit``,
        sync them in one round, then write the sidecar that makes them count."""
        with synced_at_end() as barrier:
            with atomic_path(path) as tmp:
                write(tmp)
            if write_best is not None:
                write_best()
            for sync in self.before_commit:
                sync()
            barrier.sync()
            commit_sidecar()

    def wait(self) -> None:
        """Block until the checkpoint being written is committed; raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def on_train_end(self, loop: Loop) -> None:
        self.wait()
        if self.best is not None:
            self.best.finish()

    def close(self) -> None:
        try:
            self.wait()
        except Exception as err:
            # Training already failed and that error is the one reported; this one is
            # usually its echo (a full disk). Only at DEBUG: logging it to train.log on a
            # full disk would print a second traceback.
            logger.debug("the last checkpoint could not be written either: %s", err)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

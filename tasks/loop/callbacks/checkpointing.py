"""Epoch checkpoints: ``checkpoints/epoch-NNNN.<ext>``, committed by their sidecar."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tasks.loop.callbacks.best_weights import BestWeights
from tasks.loop.loop import Callback, Loop
from tasks.store.atomic import SyncBarrier, atomic_path, collecting, current_barrier, synced_at_end
from tasks.store.checkpoints import (
    checkpoint_path,
    commit,
    commit_partial,
    partial_path,
    prune,
    retain,
)

__all__ = ["INLINE_STATE_BYTES", "Checkpointing"]

# A checkpoint state up to this size is written on the training thread (see
# Checkpointing._writes_inline); a larger one is written while the next epoch trains.
INLINE_STATE_BYTES = 64 << 20

logger = logging.getLogger("forge")


class Checkpointing(Callback):
    """Saves a resumable checkpoint every ``every`` epochs, at the last and at a stop,
    keeping the newest ``keep`` (all when None) and the best weights they refer to.

    With ``keep`` 1, an intermediate checkpoint is there only to resume after a crash
    (retention deletes it at the next one), so it is skipped when the last checkpoint of
    this run (or its start) is less than ``min_interval_s`` seconds old: small, fast epochs
    then pay for one checkpoint a second, not one an epoch, and a crash redoes at most that
    much training. The last epoch, a stop and a preemption always write one; a run keeping
    several checkpoints gets every ``every``-th epoch, as its eval configs may name them.

    A checkpoint counts once its sidecar is written, after the checkpoint itself is fully
    written and synced; the sidecar holds the loop's state (best so far, schedule, early
    stopping, why training stopped), so a resumed run continues exactly, and a run that
    stopped early stays stopped.

    The state is copied when the epoch ends. A small state (:data:`INLINE_STATE_BYTES`)
    is written at once on the training thread; a larger one is written by one background
    thread while the next epoch trains (when the session can snapshot its state). Either
    way the syncs and the sidecar happen on that thread; the next checkpoint first waits
    for them, so at most one commit is in flight, they commit in order, and a commit's
    error surfaces there. The last one, inside a step, is handed to the step's
    :class:`~tasks.store.atomic.SyncBarrier`, which waits for it before the marker (Train
    waits before recording the run as done).

    Before the sidecar commits, the best weights the checkpoint names are on disk
    (:meth:`BestWeights.take_unwritten`, written with the checkpoint) and ``before_commit``
    ran (e.g. syncing metrics.csv), so what a checkpoint promises is durable when it
    counts. The best weights are finished (``model/best.*``, ``best.json``) after the
    last checkpoint is written.
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
        min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.suffix = suffix
        self.every = every
        self.best = best
        self.keep = keep
        self.min_interval_s = min_interval_s if keep == 1 else 0.0
        self.clock = clock
        self._last_write = clock()
        self.background = background
        self.before_commit = list(before_commit)
        if best is not None:
            best.adopted = True
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._inline: bool | None = None
        self._handed_over = False

    def on_train_begin(self, loop: Loop) -> None:
        self._last_write = self.clock()

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        if self._pending is not None and self._pending.done():
            self.wait()  # a failed background write stops training at the next epoch end
        final = epoch >= loop.epochs or bool(loop.stop_reason)
        if not final and (epoch % self.every or self._recent()):
            return
        self._last_write = self.clock()
        write = loop.session.checkpoint_writer(epoch)
        bookkeeping = {**(self.best.state() if self.best else {}), "loop": loop.state()}
        write_best = self.best.take_unwritten() if self.best else None
        path = checkpoint_path(self.directory, epoch, self.suffix)

        def commit_sidecar() -> None:
            commit(self.directory, epoch, self.suffix, bookkeeping)
            keep_best = bookkeeping.get("best_epoch")
            if self.keep is not None:
                keep_best = retain(self.directory, self.keep)
            prune(self.directory, keep_best=keep_best)

        self.wait()
        if not (self.background and loop.session.snapshots):
            self._write_then_commit(path, write, write_best, commit_sidecar)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="forge-checkpoint")
        if not self._writes_inline(loop):
            self._pending = self._pool.submit(
                self._write_then_commit, path, write, write_best, commit_sidecar
            )
            return
        # A small state: written here, in about the time a hand-over would cost; only the
        # syncs (which wait on the disk, not the CPU) and the sidecar go to the thread.
        written = self._write(path, write, write_best)
        self._pending = self._pool.submit(self._sync_then_commit, written, commit_sidecar)

    def _recent(self) -> bool:
        """Whether the last checkpoint (or the start) is younger than ``min_interval_s``."""
        return self.clock() - self._last_write < self.min_interval_s

    def _writes_inline(self, loop: Loop) -> bool:
        """Whether checkpoints are written on the training thread: when the state is at
        most :data:`INLINE_STATE_BYTES`. A thread writing a small state costs the training
        thread more than writing it itself: the thread's Python work (pickling, zip and
        file records) takes the interpreter lock at every release of the training thread's
        tensor operations, and each such switch can cost a whole switch interval."""
        if self._inline is None:
            size = loop.session.state_nbytes()
            self._inline = size is not None and size <= INLINE_STATE_BYTES
        return self._inline

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
        """:meth:`_write` the checkpoint, then :meth:`_sync_then_commit` it."""
        self._sync_then_commit(self._write(path, write, write_best), commit_sidecar)

    @staticmethod
    def _write(
        path: Path, write: Callable[[Path], None], write_best: Callable[[], None] | None
    ) -> SyncBarrier:
        """Write the checkpoint file and the best weights it names; return their
        (unsynced) paths for whoever commits them."""
        with collecting() as written:
            with atomic_path(path) as tmp:
                write(tmp)
            if write_best is not None:
                write_best()
        return written

    def _sync_then_commit(self, written: SyncBarrier, commit_sidecar: Callable[[], None]) -> None:
        """Run ``before_commit`` (e.g. syncing metrics.csv), sync it and ``written`` in one
        round, then write the sidecar that makes them count (synced before this returns)."""
        with synced_at_end() as barrier:
            barrier.paths |= written.paths
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
        barrier = current_barrier()
        if self._pending is not None and self._inline and barrier is not None:
            # The last checkpoint's syncs and sidecar finish while the step writes its
            # other files; the step's barrier waits for them before its marker. Its files
            # (and the best weights it names) are already written, so nothing below
            # reads a file still being written.
            barrier.wait_for(self._pending)
            self._pending = None
            self._handed_over = True
        else:
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
                # A commit handed to the step's barrier finishes on its own; the barrier
                # waits for it.
                self._pool.shutdown(wait=not self._handed_over)
                self._pool = None

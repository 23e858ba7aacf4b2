"""Epoch checkpoints: ``checkpoints/epoch-NNNN.<ext>``, committed by their sidecar."""

from __future__ import annotations

from pathlib import Path

from tasks.loop.callbacks.best_weights import BestWeights
from tasks.loop.loop import Callback, Loop
from tasks.store.atomic import atomic_path
from tasks.store.checkpoints import checkpoint_path, commit, prune, retain

__all__ = ["Checkpointing"]


class Checkpointing(Callback):
    """Saves a resumable checkpoint every ``every`` epochs, at the last and at a stop,
    keeping the newest ``keep`` (all when None) and the best weights they refer to.

    A checkpoint counts once its sidecar is written, after the checkpoint itself; the
    sidecar holds the loop's state (best so far, early stopping, why training stopped), so
    a resumed run continues exactly, and a run that stopped early stays stopped.
    """

    def __init__(
        self,
        directory: Path,
        suffix: str,
        every: int,
        best: BestWeights | None = None,
        keep: int | None = None,
    ) -> None:
        self.directory = directory
        self.suffix = suffix
        self.every = every
        self.best = best
        self.keep = keep

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        if not (epoch % self.every == 0 or epoch >= loop.epochs or loop.stop_reason):
            return
        with atomic_path(checkpoint_path(self.directory, epoch, self.suffix)) as tmp:
            loop.session.save_checkpoint(tmp, epoch)
        best = self.best.state() if self.best is not None else {}
        commit(self.directory, epoch, self.suffix, {**best, "loop": loop.state()})
        keep_best = best.get("best_epoch")
        if self.keep is not None:
            keep_best = retain(self.directory, self.keep)
        prune(self.directory, keep_best=keep_best)

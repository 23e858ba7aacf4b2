"""The epoch and batch loop both frameworks train through, and the callback protocol.

A backend's :class:`~tasks.backends.base.TrainSession` supplies compiled train and eval
steps; everything around them — epochs, per-epoch metrics, the divergence check,
checkpoints, best weights, early stopping, progress — is written once, here and in
``tasks/loop/callbacks/``, so both frameworks behave alike by construction.

A stop request (:attr:`Loop.interrupt`, a preemption) is checked after every training
batch, and honoured at the end of an optimizer step: the epoch is left unfinished, its
progress kept in :meth:`Loop.state` (``partial``), and callbacks' ``on_interrupt`` write
the checkpoint that lets a rerun continue at the next batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any

from tasks.errors import TrainingDivergedError

if TYPE_CHECKING:
    from tasks.backends.base import EpochCallback, TrainSession
    from tasks.data.h5store import BatchStream

__all__ = ["END_REASONS", "PREEMPTED", "Callback", "Loop", "check_finite", "fit_epochs"]

# Why training ended, as run.json records it: ran all epochs, early stopping, a search's
# pruner, another stop asked by a search hook, or a signal to checkpoint and exit.
PREEMPTED = "preempted"
END_REASONS = ("completed", "early_stopping", "pruned", "stopped", PREEMPTED)
# What a checkpoint restores: a preemption ends only the process that received it.
_FINAL_REASONS = ("early_stopping", "pruned", "stopped")


class Callback:
    """Behaviour around the loop. Every hook is optional.

    A callback with a ``key`` has state that a checkpoint keeps (``state`` /
    ``load_state``, JSON values), so a resumed run continues exactly where it stopped.
    """

    key: str | None = None

    def on_train_begin(self, loop: Loop) -> None:
        """Before the first epoch this run trains (also called when nothing is left)."""

    def on_epoch_begin(self, loop: Loop, epoch: int) -> None:
        """Before ``epoch`` (1-based) trains."""

    def on_batch_end(self, loop: Loop, epoch: int, index: int, scalars: Mapping[str, Any]) -> None:
        """After a training batch; ``scalars`` are the step's unsynced values."""

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        """After ``epoch`` trained and validated; ``logs`` are finite floats."""

    def on_interrupt(self, loop: Loop, epoch: int) -> None:
        """Training stopped inside ``epoch`` (``loop.state()["partial"]`` says where); no
        epoch-end hook runs for it."""

    def on_train_end(self, loop: Loop) -> None:
        """After training ended normally (completed or stopped)."""

    def close(self) -> None:
        """Release resources (files, bars); called however training ended."""

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of this callback."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` returned."""


def check_finite(epoch: int, logs: Mapping[str, float], source: str, lr: float) -> None:
    """Stop at the first epoch whose losses or metrics are NaN or infinite.

    Raises:
        TrainingDivergedError: a logged value is not finite.
    """
    bad = {k: float(v) for k, v in logs.items() if not math.isfinite(float(v))}
    if not bad:
        return
    name = "loss" if "loss" in bad else next(iter(bad))
    shown = ", ".join(f"{k}={v}" for k, v in bad.items())
    raise TrainingDivergedError(
        f"train config {source}: training diverged at epoch {epoch}: metric {name!r} is "
        f"{bad[name]} ({shown}); lower train.optimizer.lr (now {lr}), set train.grad_clip, "
        "or scale the inputs"
    )


class Loop:
    """Trains epochs ``start_epoch + 1`` … ``epochs`` of one session, running callbacks.

    Args:
        session: the backend's training session.
        train: the training batches; ``val``: validation batches or None.
        epochs: the last epoch to train.
        callbacks: run in this order at every hook.
        start_epoch: the epoch a resumed run's checkpoint holds (0: a fresh run).
        source: the train config's name, for error messages.
        accumulate: batches per optimizer step; each batch's gradient is weighted by its
            share of the group's rows, so the step equals one on the whole group.

    Attributes:
        interrupt: a container that becomes non-empty when training should stop as soon
            as the current optimizer step is done (set by the preemption callback; only
            its truthiness is read, once per batch). A stop inside an epoch ends the run
            as ``preempted`` and records where in :attr:`partial`.
        partial: after a stop inside an epoch, or before a resumed one continues: that
            epoch, the batches of it done, and the running sums of its per-batch scalars
            (see :meth:`state`).
    """

    def __init__(
        self,
        session: TrainSession,
        train: BatchStream,
        val: BatchStream | None,
        epochs: int,
        callbacks: Sequence[Callback] = (),
        *,
        start_epoch: int = 0,
        source: str = "",
        accumulate: int = 1,
    ) -> None:
        self.session = session
        self.train = train
        self.val = val if val is not None and val.rows else None
        self.epochs = epochs
        self.callbacks = list(callbacks)
        self.epoch = start_epoch
        self.source = source
        self.accumulate = max(int(accumulate), 1)
        self.stop_reason: str | None = None
        self.lr = float("nan")  # the learning rate the current epoch started with
        self.interrupt: Sized = ()
        self.partial: dict[str, Any] | None = None
        self._batch_hooks = [
            cb for cb in self.callbacks if type(cb).on_batch_end is not Callback.on_batch_end
        ]

    # -- state kept in checkpoints -----------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The loop's and its callbacks' state, for a checkpoint's sidecar.

        After a stop inside an epoch it also holds ``partial``: ``epoch`` (1-based),
        ``batches`` done of ``of`` (its training batches), ``rows`` done, ``sums`` (each
        scalar's row-weighted sum over those batches, float64) and ``lr`` (the rate the
        epoch started with, its metrics.csv value). Callbacks' state is that of the last
        finished epoch: nothing of theirs changes inside an epoch.
        """
        state: dict[str, Any] = {
            "stop_reason": self.stop_reason,
            "callbacks": {cb.key: cb.state() for cb in self.callbacks if cb.key},
        }
        if self.partial is not None:
            state["partial"] = dict(self.partial)
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state` (missing parts keep their fresh values).

        A ``partial`` entry makes the next epoch continue after its done batches; one that
        does not fit this loop (another epoch, batch count or malformed) is refused.

        Raises:
            ValueError: the ``partial`` entry does not fit (the checkpoint is unusable).
        """
        reason = state.get("stop_reason")
        self.stop_reason = reason if reason in _FINAL_REASONS else None
        saved = state.get("callbacks") or {}
        for cb in self.callbacks:
            if cb.key and isinstance(saved.get(cb.key), Mapping):
                cb.load_state(saved[cb.key])
        partial = state.get("partial")
        self.partial = None if partial is None else self._checked_partial(partial)

    def _checked_partial(self, partial: Any) -> dict[str, Any]:
        try:
            checked: dict[str, Any] = {
                "epoch": int(partial["epoch"]),
                "batches": int(partial["batches"]),
                "of": int(partial["of"]),
                "rows": int(partial["rows"]),
                "sums": {str(k): float(v) for k, v in dict(partial["sums"]).items()},
                "lr": float(partial["lr"]),
            }
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed partial-epoch state {partial!r}") from err
        if checked["epoch"] != self.epoch + 1 or checked["of"] != len(self.train):
            raise ValueError(
                f"partial-epoch state of epoch {checked['epoch']} with {checked['of']} batches "
                f"does not continue epoch {self.epoch} of {len(self.train)} batches"
            )
        if not 0 < checked["batches"] < checked["of"]:
            raise ValueError(f"partial-epoch state with {checked['batches']} batches done")
        order = partial.get("order")  # absent in checkpoints written before it was kept
        if order is not None and list(order) != self.train.order():
            raise ValueError(
                f"the epoch's batch order was {list(order)} (rows, batch size, block rows, "
                f"shuffle, seed) and is now {self.train.order()}: [forge] buffer_mb changed"
            )
        checked["order"] = self.train.order()
        return checked

    # -- running -----------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Ask the loop to end after the current epoch (``reason``: one of END_REASONS)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    @property
    def end_reason(self) -> str:
        return self.stop_reason or "completed"

    def run(self) -> None:
        """Train until the last epoch or a stop; every callback is closed afterwards."""
        try:
            for cb in self.callbacks:
                cb.on_train_begin(self)
            while self.stop_reason is None and self.epoch < self.epochs:
                self._epoch(self.epoch + 1)
            for cb in self.callbacks:
                cb.on_train_end(self)
        finally:
            for cb in self.callbacks:
                cb.close()

    def _epoch(self, epoch: int) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(self, epoch)
        self.lr = self.session.learning_rate()
        if self.partial is not None:  # a resumed epoch keeps the rate it started with
            self.lr = self.partial["lr"]
        logs = self._pass(self.train, epoch, train=True)
        if logs is None:  # stopped inside the epoch: no epoch-end hook sees it
            self.stop(PREEMPTED)
            for cb in self.callbacks:
                cb.on_interrupt(self, epoch)
            return
        self.partial = None
        if self.val is not None:
            val = self._pass(self.val, epoch, False) or {}  # only training passes stop
            logs.update({f"val_{k}": v for k, v in val.items()})
        self.epoch = epoch
        # Before anything is logged or checkpointed: a diverged epoch is never kept.
        check_finite(epoch, logs, self.source, self.session.learning_rate())
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, logs)

    def _pass(self, stream: BatchStream, epoch: int, train: bool) -> dict[str, float] | None:
        """One pass over ``stream``: the row-weighted mean of every named scalar.

        A training pass continues a resumed epoch after its done batches, and returns None
        when :attr:`interrupt` stopped it early (:attr:`partial` then says where). A
        resumed epoch's means add the stored sums to the new batches' sums, so they equal
        an uninterrupted epoch's up to float summation order (two partial sums added
        instead of one sum over all batches: a difference in the last bits).
        """
        session = self.session
        step = session.train_step if train else session.eval_step
        hooks = self._batch_hooks if train else []
        values: dict[str, list[Any]] = {}
        sizes: list[int] = []
        group = self._group_of(stream) if train else None
        done = self.partial if train else None
        start = done["batches"] if done is not None else 0
        interrupt = self.interrupt if train else ()
        stopped = False
        with session.mode(train):
            for index, batch in enumerate(stream.epoch(epoch, skip=start), start):
                if group is None:
                    scalars = step(batch)
                else:
                    scalars = session.train_step(batch, *group(index))
                for key, value in scalars.items():
                    values.setdefault(key, []).append(value)
                sizes.append(len(next(iter(batch.values()))))
                for cb in hooks:
                    cb.on_batch_end(self, epoch, index, scalars)
                if interrupt and self._may_stop_after(index, len(stream), group):
                    stopped = True
                    break
        sums, rows = _weighted_sums(session, values, sizes)
        if done is not None:
            rows += done["rows"]
            for key, value in done["sums"].items():
                sums[key] = value + sums.get(key, 0.0)
        if stopped:
            # A NaN among the sums makes the epoch's mean NaN: fail now, as its end would.
            means = {key: value / max(rows, 1) for key, value in sums.items()}
            check_finite(epoch, means, self.source, self.session.learning_rate())
            batches = start + len(sizes)
            self.partial = {"epoch": epoch, "batches": batches, "of": len(stream),
                            "rows": rows, "sums": sums, "lr": self.lr,
                            "order": stream.order()}  # fmt: skip
            return None
        return {key: value / max(rows, 1) for key, value in sums.items()}

    def _may_stop_after(self, index: int, count: int, group: Any) -> bool:
        """Whether a stop after batch ``index`` leaves a resumable state: batches remain
        (else the epoch ends normally, and stops there), and no gradient is half
        accumulated."""
        return index + 1 < count and (group is None or group(index)[1])

    def _group_of(self, stream: BatchStream) -> Any:
        """``index → (weight, apply)`` for gradient accumulation; None without it.

        Batches are full but the last, so each group's rows are known in advance: a
        batch's loss is weighted by its share of its group's rows, and the optimizer
        steps after a group's last batch (the last group of an epoch may be shorter).
        """
        if self.accumulate == 1:
            return None
        count, size, rows, per = len(stream), stream.batch_size, stream.rows, self.accumulate

        def group(index: int) -> tuple[float, bool]:
            first = index - index % per
            last = min(first + per, count) - 1
            group_rows = min(rows, (last + 1) * size) - first * size
            batch_rows = min(rows, (index + 1) * size) - index * size
            return batch_rows / group_rows, index == last

        return group


def _weighted_sums(
    session: TrainSession, values: Mapping[str, list[Any]], sizes: Sequence[int]
) -> tuple[dict[str, float], int]:
    """Each scalar's row-weighted sum, and the rows: computed once per pass rather than
    synced batch by batch."""
    import numpy as np

    weights = np.asarray(sizes, dtype=np.float64)
    sums = {k: float((session.to_numpy(v) * weights).sum()) for k, v in values.items()}
    return sums, int(sum(sizes))


class _Forward(Callback):
    def __init__(self, on_epoch_end: EpochCallback) -> None:
        self.forward = on_epoch_end

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        self.forward(epoch, dict(logs))


def fit_epochs(
    session: TrainSession,
    train: BatchStream,
    val: BatchStream | None,
    start_epoch: int,
    on_epoch_end: EpochCallback,
    callbacks: Iterable[Callback] = (),
) -> Loop:
    """Train ``session`` to ``settings.epochs``, calling ``on_epoch_end`` after each epoch.

    The plain form of :class:`Loop` for code that needs no checkpoints (tests, benchmarks).
    """
    loop = Loop(
        session,
        train,
        val,
        session.settings.epochs,
        [*callbacks, _Forward(on_epoch_end)],
        start_epoch=start_epoch,
        accumulate=session.settings.accumulate,
    )
    loop.run()
    return loop

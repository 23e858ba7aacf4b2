"""A hook a search uses to end a trial early (e.g. successive halving, a pruner)."""

from __future__ import annotations

from collections.abc import Callable

from tasks.loop.loop import END_REASONS, Callback, Loop

__all__ = ["SearchStop", "StopRule"]

# Given an epoch and its logs, a reason to stop the trial now, or None to go on.
StopRule = Callable[[int, dict[str, float]], "str | None"]


class SearchStop(Callback):
    """Asks ``should_stop(epoch, logs)`` after every epoch; a reason ends training.

    The run then ends as that reason when it is one of the known end reasons (a search's
    pruner says ``pruned``), else as ``stopped`` (``run.json``'s ``end_reason``); its last epoch
    is checkpointed, so it is a complete experiment that a rerun does not train further.

    After the last epoch the rule is still asked (a search records every epoch's value)
    but not obeyed: the training is already whole, so it ends ``completed`` and counts
    with its final value, and a pruned trial always has fewer epochs than a complete one.
    """

    def __init__(self, should_stop: StopRule) -> None:
        self.should_stop = should_stop
        self.reason: str | None = None

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        reason = self.should_stop(epoch, dict(logs))
        if reason and epoch < loop.epochs:
            self.reason = str(reason)
            loop.stop(self.reason if self.reason in END_REASONS else "stopped")

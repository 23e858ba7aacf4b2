"""The hook through which a running search hears about (and can stop) the training of a trial.

Train calls :func:`report_epoch` once per finished epoch. Outside a search nothing is
installed and it returns False at once. A search installs a reporter around the steps of
one trial (:func:`reporting`); the reporter passes the epoch's metric to the study and
answers whether the trial should stop now (pruned). The hook is process-local: one Train
runs per process at a time (Luigi's forked workers each have their own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

__all__ = ["PRUNED", "EpochReporter", "StopTraining", "report_epoch", "reporting"]

PRUNED = "pruned"  # run.json's end_reason of a training its search stopped

EpochReporter = Callable[[int, Mapping[str, float]], bool]

_current: list[EpochReporter] = []


class StopTraining(Exception):  # noqa: N818 - a signal to the loop, not an error
    """Raised from the epoch callback to end training early; carries the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@contextlib.contextmanager
def reporting(reporter: EpochReporter) -> Iterator[None]:
    """Install ``reporter`` for the block (the training of one trial)."""
    _current.append(reporter)
    try:
        yield
    finally:
        _current.remove(reporter)


def report_epoch(epoch: int, logs: Mapping[str, float]) -> None:
    """Report a finished epoch to the search running this training, if any.

    Raises:
        StopTraining: the search pruned this trial; end the training as complete.
    """
    if _current and _current[-1](epoch, logs):
        raise StopTraining(PRUNED)

"""Early stopping: end training when a monitored metric stops improving."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tasks.errors import ConfigError
from tasks.loop.loop import Callback, Loop

__all__ = ["EarlyStopping"]


class EarlyStopping(Callback):
    """Stops after ``patience`` epochs in which ``monitor`` did not improve by ``min_delta``.

    The run ends as ``early_stopping``; its last epoch is checkpointed with that reason,
    so the experiment is complete and a rerun does not train further.
    """

    key = "early_stopping"

    def __init__(
        self, monitor: str, mode: str, patience: int, min_delta: float = 0.0, source: str = ""
    ) -> None:
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_delta = patience, abs(min_delta)
        self.source = source
        self.best: float | None = None
        self.wait = 0

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        if self.monitor not in logs:
            raise ConfigError(
                f"train config {self.source}: key 'early_stopping.monitor' is "
                f"{self.monitor!r}, but training logs only {sorted(logs)}; set it to one of them"
            )
        value = float(logs[self.monitor])
        if self._improved(value):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            loop.stop("early_stopping")

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state(self, state: Mapping[str, Any]) -> None:
        best = state.get("best")
        self.best = None if best is None else float(best)
        self.wait = int(state.get("wait", 0))

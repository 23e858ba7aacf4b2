"""Progress: Luigi's status message and percentage, and a per-batch bar on a terminal."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol

from tasks.loop.loop import Callback, Loop

__all__ = ["Progress", "StatusReporter"]

logger = logging.getLogger("forge")

# The loss shown on the bar is synced from the device at most this often (seconds).
_REFRESH_S = 0.5


class StatusReporter(Protocol):
    """What a Luigi task offers the visualiser."""

    def set_status_message(self, message: str) -> None: ...

    def set_progress_percentage(self, percentage: float) -> None: ...


class Progress(Callback):
    """Epoch-level status for Luigi; on an interactive stderr, a tqdm bar per epoch.

    Nothing is written to a non-interactive stderr (log files, CI), and the bar reads the
    batch loss back from the device only every half second.
    """

    def __init__(
        self, reporter: StatusReporter, name: str, interactive: bool | None = None
    ) -> None:
        self.reporter = reporter
        self.name = name
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.bar: Any = None
        self._shown = 0.0

    def on_epoch_begin(self, loop: Loop, epoch: int) -> None:
        if not self.interactive:
            return
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(
            total=len(loop.train),
            initial=loop.partial["batches"] if loop.partial else 0,  # a resumed epoch
            unit="batch",
            desc=f"{self.name} epoch {epoch}/{loop.epochs}",
            leave=False,
        )
        self._shown = 0.0

    def on_batch_end(self, loop: Loop, epoch: int, index: int, scalars: Mapping[str, Any]) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.monotonic()
        if "loss" in scalars and now - self._shown >= _REFRESH_S:
            self._shown = now
            loss = float(loop.session.to_numpy([scalars["loss"]])[0])
            self.bar.set_postfix_str(f"loss={loss:.4g}", refresh=False)

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in logs.items())
        self.reporter.set_progress_percentage(round(100.0 * epoch / loop.epochs, 1))
        self.reporter.set_status_message(f"epoch {epoch}/{loop.epochs}: {shown}")
        if self.bar is not None:
            self.bar.set_postfix_str(shown[:80])
        logger.info("epoch %d/%d %s", epoch, loop.epochs, logs)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

"""Learning-rate schedules, computed by Forge and set on either framework's optimizer.

A schedule is plain Python: the loop asks it for the learning rate before every epoch
(and, for per-step schedules such as ``onecycle``, before every optimizer step) and sets
it on the optimizer, so ``step``, ``cosine`` & co. mean exactly the same in torch and
TensorFlow, and their state is a few JSON numbers a checkpoint's sidecar keeps.
Users add their own with ``@register_scheduler``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tasks.registry import register_scheduler

__all__ = ["Schedule", "Warmup", "constant", "cosine", "exponential", "onecycle", "plateau", "step"]


class Schedule:
    """The learning rate at a point of training.

    ``per_step`` schedules are asked before every optimizer step, others before every
    epoch. ``observe`` sees each finished epoch's logs (for ``plateau``).
    """

    per_step = False

    def __init__(self, base_lr: float) -> None:
        self.base_lr = float(base_lr)

    def lr(self, epoch: int, step: int) -> float:
        """The rate for 0-based ``epoch`` (epochs done) and ``step`` (optimizer steps done)."""
        return self.base_lr

    def observe(self, epoch: int, logs: Mapping[str, float]) -> None:
        """See the logs of finished (1-based) ``epoch``."""

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state`."""


class Warmup(Schedule):
    """Linear warm-up over the first ``epochs`` epochs, then ``inner`` from its epoch 0."""

    def __init__(self, inner: Schedule, epochs: int) -> None:
        super().__init__(inner.base_lr)
        self.inner = inner
        self.epochs = epochs
        self.per_step = inner.per_step

    def lr(self, epoch: int, step: int) -> float:
        if epoch < self.epochs:
            return self.base_lr * (epoch + 1) / (self.epochs + 1)
        return self.inner.lr(epoch - self.epochs, step)

    def observe(self, epoch: int, logs: Mapping[str, float]) -> None:
        if epoch > self.epochs:
            self.inner.observe(epoch - self.epochs, logs)

    def state(self) -> dict[str, Any]:
        return self.inner.state()

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.inner.load_state(state)


class _Fn(Schedule):
    def __init__(self, base_lr: float, fn: Any, per_step: bool = False) -> None:
        super().__init__(base_lr)
        self.fn = fn
        self.per_step = per_step

    def lr(self, epoch: int, step: int) -> float:
        return float(self.fn(epoch, step))


@register_scheduler("constant")
def constant(base_lr: float) -> Schedule:
    """The optimizer's ``lr`` throughout (useful with ``warmup_epochs``)."""
    return Schedule(base_lr)


@register_scheduler("step")
def step(base_lr: float, step_size: int = 10, gamma: float = 0.1) -> Schedule:
    """``lr * gamma ** (epoch // step_size)`` (torch's StepLR)."""
    size = max(int(step_size), 1)
    return _Fn(base_lr, lambda e, s: base_lr * gamma ** (e // size))


@register_scheduler("exponential")
def exponential(base_lr: float, gamma: float = 0.9) -> Schedule:
    """``lr * gamma ** epoch`` (torch's ExponentialLR)."""
    return _Fn(base_lr, lambda e, s: base_lr * gamma**e)


@register_scheduler("cosine")
def cosine(base_lr: float, epochs: int, t_max: int | None = None, eta_min: float = 0.0) -> Schedule:
    """Cosine annealing from ``lr`` to ``eta_min`` over ``t_max`` epochs (default: all)."""
    period = max(int(t_max or epochs), 1)

    def fn(e: int, s: int) -> float:
        t = min(e, period)
        return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t / period)) / 2

    return _Fn(base_lr, fn)


@register_scheduler("onecycle")
def onecycle(
    base_lr: float,
    epochs: int,
    steps_per_epoch: int,
    max_lr: float | None = None,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """The one-cycle policy per optimizer step (torch's OneCycleLR, cosine annealing).

    ``max_lr`` defaults to the optimizer's ``lr``.
    """
    peak = float(max_lr if max_lr is not None else base_lr)
    initial = peak / div_factor
    final = initial / final_div_factor
    total = max(epochs * steps_per_epoch, 2)
    end_up = max(float(pct_start * total) - 1, 1.0)
    end = total - 1

    def anneal(start: float, stop: float, pct: float) -> float:
        return stop + (start - stop) / 2.0 * (math.cos(math.pi * min(pct, 1.0)) + 1)

    def fn(e: int, s: int) -> float:
        t = e * steps_per_epoch + s
        if t <= end_up:
            return anneal(initial, peak, t / end_up)
        return anneal(peak, final, (t - end_up) / max(end - end_up, 1.0))

    return _Fn(base_lr, fn, per_step=True)


class _Plateau(Schedule):
    def __init__(
        self, base_lr: float, monitor: str, mode: str, factor: float, patience: int, min_lr: float
    ) -> None:
        super().__init__(base_lr)
        self.monitor, self.mode = monitor, mode
        self.factor, self.patience, self.min_lr = factor, patience, min_lr
        self.current = self.base_lr
        self.best: float | None = None
        self.bad = 0

    def lr(self, epoch: int, step: int) -> float:
        return self.current

    def observe(self, epoch: int, logs: Mapping[str, float]) -> None:
        if self.monitor not in logs:
            return
        value = float(logs[self.monitor])
        better = self.best is None or (
            value < self.best if self.mode == "min" else value > self.best
        )
        if better:
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad > self.patience:
            self.current = max(self.current * self.factor, self.min_lr)
            self.bad = 0

    def state(self) -> dict[str, Any]:
        return {"current": self.current, "best": self.best, "bad": self.bad}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.current = float(state.get("current", self.base_lr))
        best = state.get("best")
        self.best = None if best is None else float(best)
        self.bad = int(state.get("bad", 0))


@register_scheduler("plateau")
def plateau(
    base_lr: float,
    monitor: str,
    mode: str,
    factor: float = 0.1,
    patience: int = 10,
    min_lr: float = 0.0,
) -> Schedule:
    """Multiply the rate by ``factor`` after ``patience`` epochs without improvement of
    ``train.monitor`` (torch's ReduceLROnPlateau)."""
    return _Plateau(base_lr, monitor, mode, factor, patience, min_lr)

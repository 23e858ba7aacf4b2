"""The training loop shared by every framework, and the callbacks that run around it."""

from __future__ import annotations

from tasks.loop.loop import END_REASONS, Callback, Loop, check_finite, fit_epochs

__all__ = ["END_REASONS", "Callback", "Loop", "check_finite", "fit_epochs"]

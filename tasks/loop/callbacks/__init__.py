"""Callbacks of the training loop, one behaviour per module."""

from __future__ import annotations

from tasks.loop.callbacks.best_weights import BestWeights
from tasks.loop.callbacks.checkpointing import Checkpointing
from tasks.loop.callbacks.early_stopping import EarlyStopping
from tasks.loop.callbacks.lr_schedule import LRSchedule
from tasks.loop.callbacks.metrics_csv import MetricsCsv
from tasks.loop.callbacks.preemption import Preemption
from tasks.loop.callbacks.progress import Progress, StatusReporter
from tasks.loop.callbacks.search_stop import SearchStop, StopRule
from tasks.loop.callbacks.tensorboard import TensorBoard

__all__ = [
    "BestWeights",
    "Checkpointing",
    "EarlyStopping",
    "LRSchedule",
    "MetricsCsv",
    "Preemption",
    "Progress",
    "SearchStop",
    "StatusReporter",
    "StopRule",
    "TensorBoard",
]

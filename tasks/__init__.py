"""Forge: config-driven Luigi tasks for machine-learning experiments.

The pipeline ``PrepareData → BuildModel → Train → Evaluate`` turns data, model, train and
eval configs into one self-describing directory per experiment. Users extend it with the
``register_*`` decorators. Importing this package imports neither torch nor TensorFlow.
"""

from __future__ import annotations

from tasks.build_model import BuildModel
from tasks.errors import (
    AlreadyRunningError,
    BackendUnavailableError,
    ConfigError,
    CorruptArtifactError,
    DataError,
    ExperimentError,
    ExperimentNotFoundError,
    ForgeError,
    RegistryError,
    StorageError,
    SweepError,
)
from tasks.evaluate import Evaluate
from tasks.load_trained import CodeDriftWarning, ExportFallbackWarning, LoadTrained
from tasks.prepare_data import PrepareData
from tasks.registry import register_dataset, register_metric, register_model, register_objective
from tasks.sweep import Sweep
from tasks.train import Train

__all__ = [
    "AlreadyRunningError",
    "BackendUnavailableError",
    "BuildModel",
    "CodeDriftWarning",
    "ConfigError",
    "CorruptArtifactError",
    "DataError",
    "Evaluate",
    "ExperimentError",
    "ExperimentNotFoundError",
    "ExportFallbackWarning",
    "ForgeError",
    "LoadTrained",
    "PrepareData",
    "RegistryError",
    "StorageError",
    "Sweep",
    "SweepError",
    "Train",
    "register_dataset",
    "register_metric",
    "register_model",
    "register_objective",
]

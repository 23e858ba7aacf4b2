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
)
from tasks.evaluate import Evaluate
from tasks.prepare_data import PrepareData
from tasks.registry import register_dataset, register_metric, register_model, register_objective
from tasks.train import Train

__all__ = [
    "AlreadyRunningError",
    "BackendUnavailableError",
    "BuildModel",
    "ConfigError",
    "CorruptArtifactError",
    "DataError",
    "Evaluate",
    "ExperimentError",
    "ExperimentNotFoundError",
    "ForgeError",
    "PrepareData",
    "RegistryError",
    "StorageError",
    "Train",
    "register_dataset",
    "register_metric",
    "register_model",
    "register_objective",
]

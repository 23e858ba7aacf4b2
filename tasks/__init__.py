"""Forge: config-driven Luigi tasks for machine-learning experiments.

The pipeline ``PrepareData → BuildModel → Train → Evaluate`` turns data, model, train and
eval configs into one self-describing directory per experiment; :class:`LoadTrained`
reads one back. Users extend it with the ``register_*`` decorators; builders receive a
:class:`DataMeta`. Importing this package imports neither torch nor TensorFlow and
changes nothing global (the entry points ``pipelines`` and ``forge`` do that).

This ``__all__`` is the public API; modules named with a leading underscore, and names
not listed here, are internal.
"""

from __future__ import annotations

from tasks.build_model import BuildModel
from tasks.data.h5store import DataMeta
from tasks.errors import (
    AlreadyRunningError,
    AmbiguousExperimentError,
    BackendUnavailableError,
    CodeDriftWarning,
    ConfigError,
    CorruptArtifactError,
    DataError,
    ExperimentError,
    ExperimentNotFoundError,
    ForgeError,
    ForgeWarning,
    PreemptedError,
    RegistryError,
    StorageError,
    SweepError,
    TrainingDivergedError,
)
from tasks.evaluate import Evaluate
from tasks.experiment import Evaluation, Experiment
from tasks.load_trained import LoadTrained
from tasks.prepare_data import PrepareData
from tasks.registry import (
    register_dataset,
    register_metric,
    register_model,
    register_objective,
    register_optimizer,
    register_scheduler,
)
from tasks.sweep import Sweep
from tasks.train import Train

__all__ = [
    "AlreadyRunningError",
    "AmbiguousExperimentError",
    "BackendUnavailableError",
    "BuildModel",
    "CodeDriftWarning",
    "ConfigError",
    "CorruptArtifactError",
    "DataError",
    "DataMeta",
    "Evaluate",
    "Evaluation",
    "Experiment",
    "ExperimentError",
    "ExperimentNotFoundError",
    "ForgeError",
    "ForgeWarning",
    "LoadTrained",
    "PreemptedError",
    "PrepareData",
    "RegistryError",
    "StorageError",
    "Sweep",
    "SweepError",
    "Train",
    "TrainingDivergedError",
    "register_dataset",
    "register_metric",
    "register_model",
    "register_objective",
    "register_optimizer",
    "register_scheduler",
]

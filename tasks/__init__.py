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

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

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

if _TYPE_CHECKING:
    from tasks.build_model import BuildModel
    from tasks.data.h5store import DataMeta
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

# Public name -> the module that defines it. These are imported on first use (PEP 562), so
# that what only reads the store (`forge ls`, `LoadTrained`) does not pay for Luigi, the
# config schema and every step; `pipelines` and `from tasks import Train` import them.
_LAZY = {
    "BuildModel": "tasks.build_model",
    "DataMeta": "tasks.data.h5store",
    "Evaluate": "tasks.evaluate",
    "Evaluation": "tasks.experiment",
    "Experiment": "tasks.experiment",
    "LoadTrained": "tasks.load_trained",
    "PrepareData": "tasks.prepare_data",
    "Sweep": "tasks.sweep",
    "Train": "tasks.train",
    "register_dataset": "tasks.registry",
    "register_metric": "tasks.registry",
    "register_model": "tasks.registry",
    "register_objective": "tasks.registry",
    "register_optimizer": "tasks.registry",
    "register_scheduler": "tasks.registry",
}


def __getattr__(name: str) -> _Any:
    """The public name ``name``, imported from its module on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tasks' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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

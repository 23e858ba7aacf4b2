"""The one exception hierarchy of Forge.

Every error Forge raises on purpose derives from :class:`ForgeError`, so callers can catch
them all at once and the command line can print them as one clean line::

    ForgeError
     ├── ConfigError              a config file, key or override is wrong
     │    └── RegistryError       a loader/builder/objective/metric name is not registered
     ├── DataError                a dataset's arrays are unusable (NaNs, mismatched lengths, ...)
     ├── BackendUnavailableError  the framework a model config asks for is not installed
     ├── ExperimentError          something about a stored experiment is wrong
     │    ├── ExperimentNotFoundError   no finished experiment at that path / for those configs
     │    │    └── AmbiguousExperimentError   a prefix names several experiments
     │    ├── CorruptArtifactError      a weight / checkpoint / export file is truncated or unsafe
     │    └── TrainingDivergedError     training produced a NaN or infinite loss / metric
     ├── StorageError             writing results failed (disk full, I/O error, read-only dir)
     ├── SweepError               experiments of a sweep failed (the others still ran)
     ├── AlreadyRunningError      another process is running the same step right now
     └── PreemptedError           SIGUSR1/SIGTERM: training saved a checkpoint and stopped

and the warnings users may filter::

    ForgeWarning (UserWarning)
     └── CodeDriftWarning         the code of a stored experiment changed since training
"""

from __future__ import annotations

__all__ = [
    "AlreadyRunningError",
    "AmbiguousExperimentError",
    "BackendUnavailableError",
    "CodeDriftWarning",
    "ConfigError",
    "CorruptArtifactError",
    "DataError",
    "ExperimentError",
    "ExperimentNotFoundError",
    "ForgeError",
    "ForgeWarning",
    "PreemptedError",
    "RegistryError",
    "StorageError",
    "SweepError",
    "TrainingDivergedError",
]


class ForgeError(Exception):
    """Root of every error Forge raises deliberately."""


class ConfigError(ForgeError):
    """A config file, one of its keys, or an override is invalid.

    The message names the file and the full dotted key, and says how to fix it.
    """


class RegistryError(ConfigError):
    """A config names a loader, builder, objective or metric that is not registered."""


class DataError(ForgeError):
    """A dataset's arrays cannot be used as they are."""


class BackendUnavailableError(ForgeError):
    """The framework a model config asks for cannot be imported."""


class ExperimentError(ForgeError):
    """A stored experiment cannot be used."""


class ExperimentNotFoundError(ExperimentError):
    """No finished experiment exists at a path or for a set of configs."""


class AmbiguousExperimentError(ExperimentNotFoundError):
    """A prefix names several experiments; the message lists them."""


class CorruptArtifactError(ExperimentError):
    """A stored artifact (weights, checkpoint, export) is truncated, tampered with or unsafe."""


class TrainingDivergedError(ExperimentError):
    """An epoch logged a NaN or infinite loss or metric, so the experiment cannot finish.

    The message names the epoch and the metric and suggests a fix (a lower learning rate,
    gradient clipping, scaled inputs). Nothing after that epoch is checkpointed, so a rerun
    with the same configs diverges the same way instead of succeeding on stale weights.
    """


class StorageError(ForgeError):
    """Results could not be written (disk full, I/O error, read-only directory)."""


class SweepError(ForgeError):
    """One or more experiments of a sweep failed; the sweep summary names them."""


class AlreadyRunningError(ForgeError):
    """Another process holds the lock of the same experiment step."""


class PreemptedError(ForgeError):
    """The process was asked to stop (SIGUSR1, SIGTERM); training checkpointed first."""


class ForgeWarning(UserWarning):
    """Root of the warnings Forge issues, so users can filter them all at once."""


class CodeDriftWarning(ForgeWarning):
    """The loader, builder or objective source changed since the experiment was trained."""

"""LoadTrained: the trained experiment a path, a prefix or a set of configs names.

``LoadTrained("results/digits-1a2b/mlp_torch-3c4d/default-5e6f")`` is an
:class:`~tasks.experiment.Experiment` — a plain object, not a Luigi task — found the way
every ``forge`` command finds one (:func:`tasks.store.catalog.find_experiment`).
:meth:`LoadTrained.from_configs` finds the experiment the configs describe, and with
``build=True`` first runs the Luigi pipeline for its Train: the one call here that may train.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.config.yamlio import format_yaml_value
from tasks.errors import ExperimentError, ExperimentNotFoundError
from tasks.experiment import Experiment, checkpoint_name
from tasks.store.catalog import find_experiment

__all__ = ["LoadTrained"]


def _overrides_text(overrides: str | Mapping[str, Any] | Sequence[str] | None) -> str:
    """``"train.epochs=3 ..."`` from a string, a ``{"train.epochs": 3}`` mapping or a list."""
    if overrides is None:
        return ""
    if isinstance(overrides, str):
        return overrides
    if isinstance(overrides, Mapping):
        # The same typed YAML text the sweeps and format_overrides write: 1e-5 stays a float.
        return " ".join(
            shlex.quote(f"{key}={format_yaml_value(value)}") for key, value in overrides.items()
        )
    return " ".join(str(item) for item in overrides)


class LoadTrained(Experiment):
    """A trained experiment, ready for inference, found by path or by its configs.

    Make one from an experiment directory (or a unique prefix of its path or id)::

        exp = LoadTrained("results/digits-1a2b/mlp_torch-3c4d/default-5e6f")
        exp.predict(x)

    or from the configs that produce it, with :meth:`from_configs`. Nothing is loaded until
    an accessor needs it; constructing reads at most a few small files and imports no
    framework. Only ``from_configs(..., build=True)`` may start training.

    Args:
        path_or_prefix: experiment directory, or a prefix naming exactly one.
        checkpoint: ``"best"`` (default), ``"last"`` or an epoch number.
        code_free: load the code-free export Train wrote instead of rebuilding the model
            through the registered builder (needed once the builder's code is gone).

    Raises:
        ExperimentNotFoundError: the path names no experiment (lists the closest ones),
            or a prefix names several (:class:`~tasks.errors.AmbiguousExperimentError`).
        ConfigError: ``checkpoint`` is not best, last or an epoch number.
    """

    def __init__(
        self,
        path_or_prefix: str | os.PathLike[str],
        checkpoint: str | int = "best",
        code_free: bool = False,
    ) -> None:
        checkpoint_name(checkpoint)  # a bad checkpoint fails before any search
        directory = find_experiment(path_or_prefix, write_index=False)
        # find_experiment resolved the folder already: resolving it again costs as much.
        self._open(directory, checkpoint, code_free, given=path_or_prefix)

    @classmethod
    def from_configs(
        cls,
        data_config: str | os.PathLike[str],
        model_config: str | os.PathLike[str],
        train_config: str | os.PathLike[str] | None = None,
        overrides: str | Mapping[str, Any] | Sequence[str] | None = None,
        results_dir: str | os.PathLike[str] | None = None,
        *,
        build: bool = False,
        checkpoint: str | int = "best",
        code_free: bool = False,
    ) -> LoadTrained:
        """The experiment these configs produce (as Train computes its directory).

        Args:
            data_config, model_config, train_config: config files, as for Train.
            overrides: ``"train.epochs=3"``, ``{"train.epochs": 3}`` or ``["train.epochs=3"]``.
            results_dir: results directory (default: ``[forge] results_dir``).
            build: **may train**: run ``luigi.build`` for the Train first (local scheduler),
                so a missing experiment is trained and an existing one reused.
            checkpoint, code_free: as for :class:`LoadTrained`.

        Raises:
            ConfigError: a config or override is invalid.
            ExperimentNotFoundError: ``build=False`` and no finished experiment exists.
            ExperimentError: ``build=True`` and training failed.
        """
        import luigi

        from tasks.config.resolve import format_overrides, parse_overrides
        from tasks.stages import TRAIN_SECTIONS
        from tasks.store.catalog import load_catalog
        from tasks.train import Train

        checkpoint_name(checkpoint)
        text = format_overrides(parse_overrides(_overrides_text(overrides)), TRAIN_SECTIONS)
        # Parameters come from mixins, which Luigi's dataclass_transform does not see.
        train = Train(  # type: ignore[call-arg]
            data_config=os.fspath(data_config),
            model_config=os.fspath(model_config),
            train_config=os.fspath(train_config) if train_config is not None else None,
            overrides=text,
            results_dir=os.fspath(results_dir) if results_dir is not None else None,
        )
        directory = train.directory.resolve()
        if build and not train.complete():
            if not luigi.build([train], local_scheduler=True) or not train.complete():
                raise ExperimentError(
                    f"training {directory} failed; see the log above and {directory / 'train.log'}"
                )
        if not train.complete():
            nearby = [r["path"] for r in load_catalog(train.results_root, write=False).records]
            shown = "\n  ".join(nearby[:5]) or "(none)"
            raise ExperimentNotFoundError(
                f"these configs have no finished experiment (expected {directory}); train it "
                f"with LoadTrained.from_configs(..., build=True); experiments in "
                f"{train.results_root}:\n  {shown}"
            )
        exp = cls.__new__(cls)
        Experiment.__init__(exp, Path(directory), checkpoint=checkpoint, code_free=code_free)
        return exp

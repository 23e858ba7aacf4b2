"""Sweep configs (``configs/sweeps/*.yaml``): validation and expansion into experiments.

A sweep lists data / model / train / eval configs and varies config keys over a ``grid``
(cartesian product) and ``zip`` groups (lists walked in lockstep)::

    data: [configs/data/digits.yaml]
    model: [configs/model/mlp_torch.yaml, configs/model/mlp_tf.yaml]
    train: [configs/train/default.yaml]          # optional; omitted: built-in defaults
    eval: [configs/eval/default.yaml]            # optional
    grid: {model.params.hidden: [[64], [128]], train.optimizer.lr: [0.001, 0.01]}
    zip: {train.seed: [0, 1], model.seed: [0, 1]}

Every combination becomes one experiment whose varied keys are passed exactly like
``--overrides`` (canonical text from :func:`format_overrides`), so a sweep experiment and
the same experiment run by hand share one directory and one Luigi task id.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.config.compose import load_composed
from tasks.config.resolve import format_overrides, format_validation_error
from tasks.config.schema import NAME_PATTERN
from tasks.errors import ConfigError
from tasks.stages import SECTIONS

__all__ = ["SweepConfig", "SweepExperiment", "expand_sweep", "load_sweep_config"]

_KEY_PATTERN = r"^(data|model|train|eval)\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"


def _defaults() -> list[str | None]:
    """One entry meaning "the built-in defaults" (train and eval configs are optional)."""
    return [None]


class SweepConfig(BaseModel):
    """The schema of a sweep file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(None, pattern=NAME_PATTERN)
    data: list[str] = Field(min_length=1)
    model: list[str] = Field(min_length=1)
    train: list[str | None] = Field(default_factory=lambda: _defaults(), min_length=1)
    eval: list[str | None] = Field(default_factory=lambda: _defaults(), min_length=1)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip_: dict[str, list[Any]] | list[dict[str, list[Any]]] = Field(
        default_factory=list, alias="zip"
    )

    @field_validator("grid")
    @classmethod
    def _grid_values(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            _check_key(key)
            if not values:
                raise ValueError(f"grid key {key!r} has an empty list of values")
        return grid

    @field_validator("zip_")
    @classmethod
    def _zip_groups(
        cls, value: dict[str, list[Any]] | list[dict[str, list[Any]]]
    ) -> list[dict[str, list[Any]]]:
        groups = [value] if isinstance(value, dict) else value
        for group in groups:
            lengths = {key: len(values) for key, values in group.items()}
            for key in group:
                _check_key(key)
            if len(set(lengths.values())) > 1:
                raise ValueError(f"zipped lists must have equal lengths, got {lengths}")
            if any(n == 0 for n in lengths.values()):
                raise ValueError(f"zipped lists must not be empty, got {lengths}")
        return groups

    def zip_groups(self) -> list[dict[str, list[Any]]]:
        """The zip groups, always as a list (validated)."""
        return self.zip_ if isinstance(self.zip_, list) else [self.zip_]


def _check_key(key: str) -> None:
    if not re.match(_KEY_PATTERN, key):
        raise ValueError(
            f"key {key!r} must be section.dotted.key with section one of "
            f"{', '.join(SECTIONS)} (e.g. train.optimizer.lr)"
        )


@dataclass(frozen=True)
class SweepExperiment:
    """One experiment of a sweep: its config files and the values the sweep sets."""

    data: str
    model: str
    train: str | None
    eval: str | None
    values: tuple[tuple[str, Any], ...]

    @property
    def overrides(self) -> str:
        """The canonical ``--overrides`` text for :attr:`values`."""
        sections: dict[str, dict[str, Any]] = {level: {} for level in SECTIONS}
        for key, value in self.values:
            section, _, dotted = key.partition(".")
            sections[section][dotted] = value
        return format_overrides(sections, SECTIONS)

    def params(self, results_dir: str | None) -> dict[str, Any]:
        """Keyword arguments of this experiment's ``Evaluate`` task."""
        return {
            "data_config": self.data,
            "model_config": self.model,
            "train_config": self.train,
            "eval_config": self.eval,
            "overrides": self.overrides,
            "results_dir": results_dir,
        }


def load_sweep_config(path: Path) -> SweepConfig:
    """Read and validate a sweep file.

    Raises:
        ConfigError: the file is missing or invalid; the message names the file and key.
    """
    raw = copy.deepcopy(load_composed(path, what="sweep config").data)  # base: merged
    where = f"sweep config {path}"
    try:
        config = SweepConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, SweepConfig, where)) from err
    seen: dict[str, str] = {}
    for origin, keys in [("grid", list(config.grid))] + [
        (f"zip[{i}]", list(group)) for i, group in enumerate(config.zip_groups())
    ]:
        for key in keys:
            if key in seen:
                raise ConfigError(
                    f"{where}: key {key!r} is varied in both {seen[key]} and {origin}; "
                    "vary each key in one place only"
                )
            seen[key] = origin
    return config


def _locate(raw: str | None, sweep_file: Path, where: str) -> str | None:
    """A config path as given when it exists from the current directory, else beside the sweep."""
    if raw is None:
        return None
    if Path(raw).is_file() or Path(raw).is_absolute():
        return raw
    beside = sweep_file.parent / raw
    if beside.is_file():
        return str(beside)
    raise ConfigError(
        f"{where}: config file {raw!r} does not exist (looked in {os.getcwd()} and in "
        f"{sweep_file.parent}); paths are relative to the current directory"
    )


def expand_sweep(config: SweepConfig, path: Path) -> list[SweepExperiment]:
    """Every experiment of the sweep, in a stable order, without duplicates.

    Raises:
        ConfigError: a referenced config file does not exist.
    """
    where = f"sweep config {path}"
    files = {
        level: [_locate(p, path, f"{where}: key '{level}'") for p in getattr(config, level)]
        for level in SECTIONS
    }
    grid_keys = list(config.grid)
    grid_points = list(itertools.product(*(config.grid[k] for k in grid_keys)))
    zip_points = [
        [tuple((key, values[i]) for key, values in group.items()) for i in range(_length(group))]
        for group in config.zip_groups()
        if group
    ]
    experiments: dict[tuple[Any, ...], SweepExperiment] = {}
    for data, model, train, evaluation in itertools.product(*files.values()):
        for point in grid_points:
            for zipped in itertools.product(*zip_points):
                values = tuple(zip(grid_keys, point, strict=True)) + tuple(
                    pair for group in zipped for pair in group
                )
                exp = SweepExperiment(str(data), str(model), train, evaluation, values)
                experiments.setdefault((data, model, train, evaluation, exp.overrides), exp)
    return list(experiments.values())


def _length(group: dict[str, list[Any]]) -> int:
    return len(next(iter(group.values()))) if group else 0

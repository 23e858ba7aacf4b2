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

Instead of ``grid``/``zip``, a ``search`` block asks Optuna for the values (see
:class:`SearchConfig` and ``tasks/search/``); each trial is such an experiment too.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from tasks.config.compose import load_composed
from tasks.config.resolve import format_overrides, format_validation_error
from tasks.config.schema import NAME_PATTERN
from tasks.errors import ConfigError
from tasks.stages import SECTIONS

__all__ = [
    "Choices",
    "Range",
    "SearchConfig",
    "SweepConfig",
    "SweepExperiment",
    "expand_sweep",
    "load_sweep_config",
]

_KEY_PATTERN = r"^(data|model|train|eval)\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"


def _defaults() -> list[str | None]:
    """One entry meaning "the built-in defaults" (train and eval configs are optional)."""
    return [None]


class Range(BaseModel):
    """A numeric search range: ``{low: 0.0001, high: 0.1, log: true}``.

    Integers when ``low`` and ``high`` are both written as integers, floats otherwise.
    ``step`` makes the range discrete (needed by the ``grid`` sampler for floats).
    """

    model_config = ConfigDict(extra="forbid")

    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = None

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data: Any) -> Any:
        # Before parsing: the number types would take ``true`` for 1.
        if isinstance(data, dict):
            for name in ("low", "high", "step"):
                if isinstance(data.get(name), bool):
                    raise ValueError(f"{name} must be a number, not {data[name]}")
        return data

    @model_validator(mode="after")
    def _bounds(self) -> Range:
        for bound in (self.low, self.high):
            if not math.isfinite(bound):
                raise ValueError(f"low and high must be finite numbers, got {bound}")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("step and log cannot be combined")
        if self.step is not None:
            if not (math.isfinite(self.step) and self.step > 0):
                raise ValueError(f"step must be a positive number, got {self.step}")
            if self.integer and self.step != int(self.step):
                raise ValueError(
                    f"an integer range takes a whole step, got {self.step}; write low or high "
                    "as a float (16.0) for a float range"
                )
            count = (self.high - self.low) / self.step
            if abs(count - round(count)) > 1e-9 * max(1.0, abs(count)):
                raise ValueError(
                    f"step {self.step} does not divide high - low ({self.high} - {self.low}); "
                    "change high to the last value the steps reach"
                )
        return self

    def grid(self) -> list[Any] | None:
        """Every value of a discrete range (integers, or a step), else None."""
        step = self.step if self.step is not None else (1 if self.integer else None)
        if step is None or self.log:
            return None
        count = int(round((self.high - self.low) / step)) + 1
        values = [self.low + i * step for i in range(count)]
        return [int(v) for v in values] if self.integer else [float(v) for v in values]


class Choices(BaseModel):
    """A categorical search dimension: ``{choices: [[64], [128], [256, 128]]}``."""

    model_config = ConfigDict(extra="forbid")

    choices: list[Any] = Field(min_length=1)


def _dimension_kind(value: Any) -> str:
    if isinstance(value, Choices) or (isinstance(value, dict) and "choices" in value):
        return "Choices"
    return "Range"


# A mapping with ``choices`` is a Choices, anything else a Range: an error then speaks of
# the one the user meant, not of both.
Dimension = Annotated[
    Union[Annotated[Range, Tag("Range")], Annotated[Choices, Tag("Choices")]],  # noqa: UP007
    Discriminator(_dimension_kind),
]


class SearchConfig(BaseModel):
    """The ``search:`` block of a sweep file: an Optuna study over config keys."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1)
    direction: Literal["maximize", "minimize"]
    trials: int = Field(ge=1)
    sampler: Literal["tpe", "random", "cmaes", "grid"] = "tpe"
    seed: int = 0
    pruner: Literal["none", "median", "asha"] = "none"
    # Trials that finish before the median pruner prunes anything (Optuna's default: 5).
    startup_trials: int = Field(default=5, ge=0)
    space: dict[str, Dimension] = Field(min_length=1)

    @field_validator("space")
    @classmethod
    def _space_keys(cls, space: dict[str, Range | Choices]) -> dict[str, Range | Choices]:
        for key in space:
            _check_key(key)
        for key in space:
            for other in space:
                if other.startswith(key + "."):
                    raise ValueError(
                        f"key {other!r} lies inside key {key!r}, which is searched too; "
                        "search the whole value or its parts, not both"
                    )
        return space

    @model_validator(mode="after")
    def _grid_is_discrete(self) -> SearchConfig:
        if self.sampler == "grid":
            for key, dim in self.space.items():
                if isinstance(dim, Range) and dim.grid() is None:
                    raise ValueError(
                        f"the grid sampler needs discrete values, but space key {key!r} is a "
                        "float range; give it a step or use choices"
                    )
        return self

    def identity(self) -> dict[str, Any]:
        """What names the study: everything but ``trials`` (raising it continues the study)."""
        return self.model_dump(exclude={"trials"})


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
    search: SearchConfig | None = None
    # lazy: experiments write their code-free export on the first code-free load, not
    # after training (see tasks/export_policy.py); eager: right after training.
    export: Literal["lazy", "eager"] = "lazy"

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
    if config.search is not None:
        _check_search(config, where)
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


def _check_search(config: SweepConfig, where: str) -> None:
    """A search varies its keys itself, over exactly one config file per section."""
    if config.grid or any(config.zip_groups()):
        raise ConfigError(
            f"{where}: key 'search' cannot be combined with 'grid' or 'zip'; put the "
            "varied keys into search.space (as {choices: [...]}) or use two sweep files"
        )
    for level in SECTIONS:
        if len(getattr(config, level)) > 1:
            raise ConfigError(
                f"{where}: key '{level}' lists {len(getattr(config, level))} files, but a "
                "search runs over one config per section; list one file (vary its keys "
                "in search.space) or use one sweep file per config"
            )


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

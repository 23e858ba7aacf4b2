"""Checks across config sections: configs that validate one by one but cannot run together.

Each section's schema checks its own keys. What only shows when sections meet (an eval
on a test split the data config leaves empty, a ``val_*`` monitor without validation
rows, a monitor no metric produces, a checkpoint Train never writes, too few rows for
the split) is checked here, once, when a task resolves its configs: before PrepareData
writes anything. Rows that are only known once the data is loaded are checked by
:func:`check_split_rows` as PrepareData splits them, before it writes the data file.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, Protocol

from tasks import registry
from tasks.errors import ConfigError

__all__ = [
    "SEED_MAX",
    "check_sections",
    "check_split_rows",
    "kept_epochs",
    "logged_metrics",
    "non_negative_number",
    "split_rows",
    "whole_number",
]

SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's random_state range is 0..2**32-1
_SEED_PARAMS = ("seed", "random_state")
# Loaders whose row count is a parameter, known before anything is loaded.
_ROWS_PARAM = "n_samples"
_MIN_ROWS = 3
_SPLIT_NAMES = {"val": "validation", "test": "test"}


class _Section(Protocol):
    """What the checks read of a resolved section (:class:`tasks.config.resolve.Resolved`)."""

    @property
    def config(self) -> dict[str, Any]: ...

    @property
    def source(self) -> str: ...


def split_rows(n: int, val: float, test: float) -> dict[str, int]:
    """Rows per split for ``n`` rows, as PrepareData cuts them (rounded, train the rest)."""
    n_test = int(round(n * test))
    n_val = int(round(n * val))
    return {"train": n - n_test - n_val, "val": n_val, "test": n_test}


def check_split_rows(n: int, split: Mapping[str, Any], where: str) -> dict[str, int]:
    """Rows per split, refusing a split that leaves a requested part empty.

    Args:
        n: rows of the dataset.
        split: the data config's ``split`` (``val``, ``test`` fractions).
        where: the data config, for messages.

    Returns:
        Rows per split.

    Raises:
        ConfigError: fewer than 3 rows, no training rows, or a non-zero ``val``/``test``
            fraction that rounds to no rows.
    """
    if n < _MIN_ROWS:
        raise ConfigError(
            f"{where}: only {n} rows; at least {_MIN_ROWS} are needed to split; use more rows"
        )
    rows = split_rows(n, float(split["val"]), float(split["test"]))
    if rows["train"] <= 0:
        raise ConfigError(
            f"{where}: key 'split': val {split['val']} and test {split['test']} of {n} rows "
            "leave no training rows; lower them or use more rows"
        )
    for part, label in _SPLIT_NAMES.items():
        if float(split[part]) > 0 and rows[part] == 0:
            raise ConfigError(
                f"{where}: key 'split.{part}': {split[part]} of {n} rows rounds to no "
                f"{label} rows; raise split.{part}, set it to 0, or use more rows"
            )
    return rows


def _known_rows(data: Mapping[str, Any]) -> int | None:
    value = data["params"].get(_ROWS_PARAM)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_data(data: _Section) -> dict[str, float]:
    """Seeds among the loader's parameters, and the split when the row count is known.

    Returns:
        The fraction of rows each split gets (0 for an empty split).
    """
    where = f"data config {data.source}"
    params = data.config["params"]
    for name in _SEED_PARAMS:
        value = params.get(name)
        if whole_number(value):
            if not 0 <= value <= SEED_MAX:
                raise ConfigError(
                    f"{where}: key 'params.{name}' is {value}; seeds must lie in "
                    f"0..{SEED_MAX} (numpy's range); pick one in that range"
                )
    if data.config["loader"] == "moons":
        _check_moons(params, where)
    split = data.config["split"]
    fractions = {part: float(split[part]) for part in ("train", "val", "test") if part in split}
    n = _known_rows(data.config)
    if n is not None:
        rows = check_split_rows(n, split, where)
        fractions = {part: (1.0 if count else 0.0) for part, count in rows.items()}
    return fractions


def whole_number(value: Any) -> bool:
    """Whether ``value`` is an integer of any kind (Python's or numpy's), not a boolean."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def non_negative_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number >= 0 of any kind, not a boolean."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    return math.isfinite(float(value)) and float(value) >= 0


def _check_moons(params: Mapping[str, Any], where: str) -> None:
    """The built-in ``moons`` generator's parameters (its own checks cannot name the file)."""
    rows = params.get("n_samples", 1)
    if not whole_number(rows) or rows < 1:
        raise ConfigError(
            f"{where}: key 'params.n_samples' is {rows!r}; it must be a whole number of "
            "rows >= 1, e.g. 1000"
        )
    noise = params.get("noise", 0.0)
    if not non_negative_number(noise):
        raise ConfigError(
            f"{where}: key 'params.noise' is {noise!r}; it must be a number >= 0 (the "
            "standard deviation of the noise added to each coordinate), e.g. 0.1"
        )
    seed = params.get("seed", 0)
    if not whole_number(seed):
        raise ConfigError(
            f"{where}: key 'params.seed' is {seed!r}; it must be a whole number in 0..{SEED_MAX}"
        )


def _produced_metrics(model: Mapping[str, Any], train: Mapping[str, Any]) -> set[str] | None:
    """Names Train logs per epoch without the ``val_`` prefix; None when an objective
    decides (its returned dict names them, unknown until it runs)."""
    if model.get("objective"):
        return None
    names = {"loss"}
    if train["loss"] == "cross_entropy":
        names.add("accuracy")
    return names


def _check_train(data: _Section, model: _Section, train: _Section, has_val: bool) -> None:
    where = f"train config {train.source}"
    monitor = train.config["monitor"]
    if monitor.startswith("val_") and not has_val:
        raise ConfigError(
            f"{where}: key 'monitor' is {monitor!r}, but data config {data.source} "
            "leaves no validation rows (key 'split.val'); monitor "
            f"{monitor.removeprefix('val_')!r} or give split.val a fraction above 0"
        )
    registry.get_entry(
        "optimizer",
        train.config["optimizer"]["name"],
        model.config["framework"],
        where=f"{where}: key 'optimizer.name'",
    )
    produced = _produced_metrics(model.config, train.config)
    if produced is None:
        return
    available = produced | ({f"val_{name}" for name in produced} if has_val else set())
    stopping = train.config.get("early_stopping") or {}
    for key, value in (("monitor", monitor), ("early_stopping.monitor", stopping.get("monitor"))):
        if value is not None and value not in available:
            raise ConfigError(
                f"{where}: key {key!r} is {value!r}, which training never logs (loss "
                f"{train.config['loss']!r}, model config {model.source}); set it to one "
                f"of {', '.join(sorted(available))}"
            )


def kept_epochs(train: Mapping[str, Any]) -> list[int] | None:
    """The epochs whose checkpoints a finished run keeps (None: unknown before it runs,
    because early stopping may end it sooner)."""
    if train.get("early_stopping"):
        return None
    epochs, every = int(train["epochs"]), int(train["checkpoint_every"])
    saved = sorted({*range(every, epochs + 1, every), epochs})
    return saved[-int(train.get("keep_checkpoints", 1)) :]


def _check_eval(
    data: _Section, train: _Section, evaluation: _Section, fractions: dict[str, float]
) -> None:
    where = f"eval config {evaluation.source}"
    split = evaluation.config["split"]
    if split in _SPLIT_NAMES and not fractions.get(split):
        raise ConfigError(
            f"{where}: key 'split' is {split!r}, but data config {data.source} leaves no "
            f"{_SPLIT_NAMES[split]} rows (key 'split.{split}'); give split.{split} a "
            "fraction above 0 or evaluate another split"
        )
    checkpoint = evaluation.config["checkpoint"]
    epochs = train.config["epochs"]
    if isinstance(checkpoint, int) and checkpoint > epochs:
        raise ConfigError(
            f"{where}: key 'checkpoint' is {checkpoint}, but train config {train.source} "
            f"trains {epochs} epochs; pick an epoch up to {epochs}, 'best' or 'last'"
        )
    kept = kept_epochs(train.config)
    if isinstance(checkpoint, int) and kept is not None and checkpoint not in kept:
        raise ConfigError(
            f"{where}: key 'checkpoint' is {checkpoint}, but train config {train.source} keeps "
            f"only the checkpoints of epochs {', '.join(map(str, kept))} (keep_checkpoints: "
            f"{train.config.get('keep_checkpoints', 1)}); evaluate one of those, 'best' or "
            "'last', or raise train.keep_checkpoints"
        )


def logged_metrics(sections: Mapping[str, _Section]) -> set[str] | None:
    """Every metric name Train logs per epoch for these resolved sections (``loss``,
    ``val_accuracy``, ...); None when a model objective decides (known only once it runs).
    """
    produced = _produced_metrics(sections["model"].config, sections["train"].config)
    if produced is None:
        return None
    has_val = bool(_check_data(sections["data"]).get("val"))
    return produced | ({f"val_{name}" for name in produced} if has_val else set())


def check_sections(sections: Mapping[str, _Section]) -> None:
    """Refuse resolved sections that validate one by one but cannot run together.

    Args:
        sections: resolved sections of one task (a prefix of data, model, train, eval).

    Raises:
        ConfigError: one line naming the file, the key and the fix.
    """
    data = sections.get("data")
    if data is None:
        return
    fractions = _check_data(data)
    model, train = sections.get("model"), sections.get("train")
    if model is None or train is None:
        return
    _check_train(data, model, train, bool(fractions.get("val")))
    evaluation = sections.get("eval")
    if evaluation is not None:
        _check_eval(data, train, evaluation, fractions)

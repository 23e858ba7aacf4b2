"""Keys, filters and sort orders over experiment records (``--where``, ``--sort``).

A key is a summary field (``id``, ``status``, ``framework``, ``epochs``, ``best``, ...), an
evaluation metric ``<split>.<metric>`` (``test.accuracy``), a dotted config key
(``model.params.hidden``) or a provenance field (``run.duration_s``). ``tags`` is a list:
``tags==baseline`` means "is tagged baseline", ``tags!=baseline`` "is not".
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tasks.config.yamlio import parse_yaml_value
from tasks.errors import ConfigError
from tasks.store.summary import Record

__all__ = [
    "Condition",
    "SUMMARY_KEYS",
    "known_keys",
    "parse_where",
    "sort_records",
    "tag_condition",
    "value_of",
]

SUMMARY_KEYS = (
    "id",
    "path",
    "data",
    "model",
    "train",
    "framework",
    "status",
    "epochs",
    "best",
    "best_metric",
    "tags",
    "note",
)
_MISSING = object()
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
}
_WHERE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|!=|>=|<=|=|>|<)\s*(.*?)\s*$")


def value_of(record: Record, key: str, default: Any = None) -> Any:
    """The value of ``key`` in ``record``, or ``default`` when it has none."""
    if key in SUMMARY_KEYS:
        if key == "best":
            return (record.get("best") or {}).get("value", default)
        if key == "best_metric":
            return (record.get("best") or {}).get("metric", default)
        return record.get(key, default)
    metrics = record.get("metrics") or {}
    if key in metrics:
        return metrics[key]
    config = record.get("config") or {}
    if key in config:
        return config[key]
    if key.startswith("run."):
        return (record.get("run") or {}).get(key[4:], default)
    prefix = key + "."
    nested = {k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)}
    return nested or default


def known_keys(records: Iterable[Record]) -> list[str]:
    """Every key some record has a value for."""
    keys: dict[str, None] = dict.fromkeys(SUMMARY_KEYS)
    for record in records:
        keys.update(dict.fromkeys(record.get("metrics") or {}))
        keys.update(dict.fromkeys(record.get("config") or {}))
        keys.update(dict.fromkeys(f"run.{k}" for k in record.get("run") or {}))
    return list(keys)


def _check_key(key: str, records: list[Record], option: str) -> None:
    if any(value_of(r, key, _MISSING) is not _MISSING for r in records) or not records:
        return
    keys = known_keys(records)
    close = difflib.get_close_matches(key, keys, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(
        f"{option}: no listed experiment has a key {key!r}{hint}; keys are summary fields "
        f"({', '.join(SUMMARY_KEYS)}), metrics such as test.accuracy, and dotted config keys "
        "such as model.params.hidden"
    )


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(left, bool) or isinstance(right, bool):
        return left, right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left, right
    if isinstance(left, list | dict) or isinstance(right, list | dict):
        return left, right
    return str(left), str(right)


@dataclass(frozen=True)
class Condition:
    """One ``--where`` condition: ``key op value``, the value parsed as YAML."""

    key: str
    op: str
    value: Any
    text: str

    def matches(self, record: Record) -> bool:
        """Whether ``record`` satisfies the condition (never, when it lacks the key)."""
        actual = value_of(record, self.key, _MISSING)
        if actual is _MISSING or actual is None:
            return self.op == "!=" and self.value is not None
        if self.key == "tags" and isinstance(actual, list) and self.op in ("==", "=", "!="):
            # Tags are a set: == and = mean "is tagged", != "is not tagged".
            return (self.op != "!=") == (str(self.value) in actual)
        left, right = _comparable(actual, self.value)
        try:
            return bool(_OPS[self.op](left, right))
        except TypeError:
            return False


def parse_where(text: str, records: list[Record]) -> Condition:
    """Parse ``"model.params.hidden>=128"``.

    Raises:
        ConfigError: the condition is malformed or no experiment has the key.
    """
    match = _WHERE.match(text)
    if not match:
        raise ConfigError(
            f"--where {text!r}: write KEY OP VALUE with OP one of ==, !=, >=, <=, >, <, = "
            "(e.g. --where 'test.accuracy>=0.9' --where framework=torch)"
        )
    key, op, raw = match.groups()
    try:
        # A tag is text as typed (``tags==01`` is the tag "01", not the number 1).
        value = (
            raw
            if key == "tags"
            else parse_yaml_value(raw, where=f"--where {text!r}")
            if raw
            else ""
        )
    except ConfigError:
        value = raw
    _check_key(key, records, f"--where {text!r}")
    return Condition(key, op, value, text)


def tag_condition(tag: str) -> Condition:
    """``--tag TAG``: the experiment is tagged ``TAG`` (same as ``--where tags==TAG``)."""
    return Condition("tags", "==", tag, f"--tag {tag}")


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (3, 0)
    if isinstance(value, bool | int | float):
        return (0, float(value))
    if isinstance(value, str):
        return (1, value)
    return (2, repr(value))


def sort_records(records: list[Record], keys: Iterable[str]) -> list[Record]:
    """Sort by each key in turn (``-key`` descending); missing values always last.

    Raises:
        ConfigError: no experiment has one of the keys.
    """
    result = list(records)
    for spec in reversed([k for k in keys if k]):
        descending = spec.startswith("-")
        key = spec.lstrip("-+")
        _check_key(key, records, f"--sort {spec!r}")
        present = [r for r in result if value_of(r, key) is not None]
        absent = [r for r in result if value_of(r, key) is None]
        present.sort(key=lambda r: _sort_key(value_of(r, key)), reverse=descending)
        result = present + absent
    return result

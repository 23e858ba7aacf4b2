"""Safe YAML reading and writing, with caps against hostile files.

Only ``yaml.SafeLoader`` is used, so tags such as ``!!python/object/apply`` are rejected.
Aliases are capped because a "billion laughs" document is small on disk yet expands to
gigabytes once anything walks it (hashing, validation, JSON dumps).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from tasks.errors import ConfigError

__all__ = ["MAX_ALIASES", "MAX_BYTES", "dump_yaml", "load_yaml_file", "parse_yaml_value"]

MAX_BYTES = 1_000_000
# Parsed files by (path, mtime, size, inode): a sweep or a status check of many experiments
# reads the same few configs thousands of times.
_parsed: dict[tuple[str, int, int, int], dict[str, Any]] = {}
# k aliases can expand a document at most about 3**(k/3) times (each level of nesting
# repeating the previous one); 30 keeps the worst case near 60,000 nodes, far more
# aliases than any real config uses.
MAX_ALIASES = 30


class _CappedSafeLoader(yaml.SafeLoader):
    """A SafeLoader that refuses documents with more than :data:`MAX_ALIASES` aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_count = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(
                    f"more than {MAX_ALIASES} aliases (line {mark.line + 1}); "
                    "refusing a document that could expand without bound"
                )
        return super().compose_node(parent, index)


def _describe(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem


# libyaml's C parser is an order of magnitude faster than PyYAML's pure-Python one, but its
# composer cannot be hooked to count aliases: use it only for text that has none.
_FastSafeLoader: Any = getattr(yaml, "CSafeLoader", None)


def _load_text(text: str) -> Any:
    fast = _FastSafeLoader is not None and "*" not in text and "&" not in text
    loader = _FastSafeLoader(text) if fast else _CappedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml_file(path: Path, *, what: str = "config") -> dict[str, Any]:
    """Read a YAML mapping from ``path`` safely.

    Args:
        path: the file to read.
        what: how to call the file in error messages ("data config", ...).

    Returns:
        The mapping the file holds.

    Raises:
        ConfigError: the file is missing, too large, not valid YAML, or not a mapping.
    """
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not path.is_file():
        raise ConfigError(f"{what} file {path} does not exist; check the path you passed")
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)
    if key in _parsed:
        return copy.deepcopy(_parsed[key])
    size = stat.st_size
    if size > MAX_BYTES:
        raise ConfigError(
            f"{what} file {path} is {size} bytes; configs are capped at {MAX_BYTES} bytes"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what} file {path} cannot be read as UTF-8 text: {err}") from err
    try:
        data = _load_text(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} file {path} is not valid YAML: {_describe(err)}") from err
    if data is None:
        raise ConfigError(f"{what} file {path} is empty; it must hold a YAML mapping")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{what} file {path} must hold a YAML mapping of keys to values, "
            f"not a {type(data).__name__}"
        )
    _parsed[key] = data
    return copy.deepcopy(data)


def parse_yaml_value(text: str, *, where: str) -> Any:
    """Parse one override value (``3``, ``[64, 32]``, ``adam``) as YAML.

    Raises:
        ConfigError: the value is not valid YAML.
    """
    try:
        return _load_text(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: value {text!r} is not valid YAML: {_describe(err)}") from err


def dump_yaml(data: Any) -> str:
    """Serialise plain data as block-style YAML with keys in the given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)

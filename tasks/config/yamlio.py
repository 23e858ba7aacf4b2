"""Safe YAML reading and writing, with caps against hostile files.

Only ``yaml.SafeLoader`` is used, so tags such as ``!!python/object/apply`` are rejected.
Aliases are capped because a "billion laughs" document is small on disk yet expands to
gigabytes once anything walks it (hashing, validation, JSON dumps).

Scalars are typed like YAML 1.1 (PyYAML's default) with two YAML 1.2 corrections, the same
in config files, ``--overrides`` values and every file Forge writes: a float may be
written without a dot (``1e-5``, ``2E+3``), and dates are plain strings. Everything read
must be plain data (strings, numbers, booleans, null, lists, mappings); tags that build
other types (``!!binary``, ``!!set``, ``!!timestamp``, ...) are refused. Values are written
back with a dumper using the same rules, so every value survives a write and a read.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from stat import S_ISREG
from typing import Any

import yaml

from tasks.errors import ConfigError

__all__ = [
    "MAX_ALIASES",
    "MAX_BYTES",
    "copy_plain",
    "dump_yaml",
    "format_yaml_value",
    "load_yaml_file",
    "parse_yaml_value",
]

MAX_BYTES = 1_000_000
# Parsed files by (path, mtime, size, inode): a sweep or a status check of many experiments
# reads the same few configs thousands of times.
_parsed: dict[tuple[str, int, int, int, int], dict[str, Any]] = {}
# k aliases can expand a document at most about 3**(k/3) times (each level of nesting
# repeating the previous one); 30 keeps the worst case near 60,000 nodes, far more
# aliases than any real config uses.
MAX_ALIASES = 30


_FLOAT_TAG = "tag:yaml.org,2002:float"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
# YAML 1.2 floats that YAML 1.1 reads as strings: an exponent without a dot ("1e-05") or
# without a sign ("1.5e3"). PyYAML's own pattern keeps covering the dotted forms.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")


def _use_forge_scalars(cls: Any) -> Any:
    """Give a loader or dumper class Forge's implicit scalar types (see the module doc).

    Loaders and dumpers must agree: the dumper quotes exactly the strings that the loader
    would otherwise read as something else.
    """
    cls.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    cls.add_implicit_resolver(_FLOAT_TAG, _EXPONENT_FLOAT, list("-+0123456789."))
    return cls


@_use_forge_scalars
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
_FastSafeLoader: Any = (
    _use_forge_scalars(type("_FastSafeLoader", (yaml.CSafeLoader,), {}))
    if hasattr(yaml, "CSafeLoader")
    else None
)


@_use_forge_scalars
class _Dumper(yaml.SafeDumper):
    """SafeDumper whose quoting follows Forge's loaders."""


# libyaml's emitter writes the same text several times faster (every step stores its
# resolved config); the representer and the quoting rules stay PyYAML's own.
_FastDumper: Any = (
    _use_forge_scalars(type("_FastDumper", (yaml.CSafeDumper,), {}))
    if hasattr(yaml, "CSafeDumper")
    else _Dumper
)


_PLAIN_SCALARS = (str, int, float, bool, type(None))


def _first_unplain(data: Any, path: str) -> tuple[str, str] | None:
    """(key, type name) of the first value that is not plain data, else None."""
    if isinstance(data, _PLAIN_SCALARS):
        return None
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, _PLAIN_SCALARS):
                return path or "(top level)", f"{type(key).__name__} key"
            found = _first_unplain(value, f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if isinstance(data, list):
        for i, value in enumerate(data):
            found = _first_unplain(value, f"{path}[{i}]")
            if found:
                return found
        return None
    return path or "(top level)", type(data).__name__


def _check_plain(data: Any, where: str) -> None:
    found = _first_unplain(data, "")
    if found:
        key, kind = found
        raise ConfigError(
            f"{where}: key {key!r} holds a {kind}; configs hold only strings, numbers, "
            "booleans, null, lists and mappings: drop the YAML tag or quote the value"
        )


def copy_plain(data: Any) -> Any:
    """A deep copy of checked plain data (mappings, lists, immutable scalars): what
    ``copy.deepcopy`` returns for it, several times faster (no memo, no dispatch)."""
    if isinstance(data, dict):
        return {key: copy_plain(value) for key, value in data.items()}
    if isinstance(data, list):
        return [copy_plain(value) for value in data]
    return data


def _load_text(text: str) -> Any:
    fast = _FastSafeLoader is not None and "*" not in text and "&" not in text
    loader = _FastSafeLoader(text) if fast else _CappedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml_file(path: Path, *, what: str = "config", shared: bool = False) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` safely.

    Args:
        path: the file to read.
        what: how to call the file in error messages ("data config", ...).
        shared: return the mapping memoised for this version of the file instead of a
            copy; the caller only reads it (it is what every later call starts from).

    Returns:
        The mapping the file holds.

    Raises:
        ConfigError: the file is missing, too large, not valid YAML, or not a mapping.
    """
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not S_ISREG(stat.st_mode):
        raise ConfigError(f"{what} file {path} does not exist; check the path you passed")
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_ctime_ns)
    if key in _parsed:
        return _parsed[key] if shared else copy_plain(_parsed[key])
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
    _check_plain(data, f"{what} file {path}")
    _parsed[key] = data
    return data if shared else copy_plain(data)


def parse_yaml_value(text: str, *, where: str) -> Any:
    """Parse one override value (``3``, ``[64, 32]``, ``adam``) as YAML.

    The value is typed exactly as it would be inside a config file (``1e-5`` is a float,
    ``.nan`` and ``.inf`` are floats, ``"3"`` is a string).

    Raises:
        ConfigError: the value is not valid YAML or not plain data.
    """
    try:
        value = _load_text(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: value {text!r} is not valid YAML: {_describe(err)}") from err
    _check_plain(value, f"{where}: value {text!r}")
    return value


def format_yaml_value(value: Any) -> str:
    """One-line YAML text that :func:`parse_yaml_value` reads back as ``value``.

    Mappings are written with sorted keys, so equal values always give equal text; floats
    keep their type (``1.0e-05``, ``.nan``, ``-.inf``), strings that would read as another
    type are quoted.
    """
    text = yaml.dump(
        value,
        Dumper=_Dumper,
        default_flow_style=True,
        sort_keys=True,
        # Escaped, not raw: PyYAML writes some characters (NEL, U+2028) raw where its
        # reader then takes them for line breaks. The text is also plain ASCII this way.
        allow_unicode=False,
        width=math.inf,
    )
    # A scalar document ends with an explicit "..." marker; neither it nor the final line
    # break is part of the value.
    text = text.removesuffix("\n...\n")
    return text.rstrip("\n")


def dump_yaml(data: Any) -> str:
    """Serialise plain data as block-style YAML with keys in the given order.

    Non-ASCII characters are escaped, so that every string reads back unchanged.
    """
    return yaml.dump(data, Dumper=_FastDumper, sort_keys=False, default_flow_style=False)

"""Config inheritance (``base:``) and ``${section.key}`` interpolation.

A config may name a base config it extends::

    base: ../common/train.yaml     # relative to this file's folder; chains allowed

The child is deep-merged over its base: mappings merge key by key, lists and scalars
replace. ``${section.dotted.key}`` inside a value refers to a value of the resolved
configs (``${train.optimizer.lr}``, ``${model.params.hidden.0}``). A value that is one
reference keeps the referenced value's type; a reference inside a longer string is
replaced by the value's YAML text. A section may refer to itself and to the sections
before it (data, model, train, eval), never to later ones: a step is identified without
knowing its downstream steps, so PrepareData cannot depend on a train config.

Everything here works on plain dicts read by the capped safe loader; nothing runs code.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.config.yamlio import format_yaml_value, load_yaml_file
from tasks.errors import ConfigError
from tasks.stages import SECTIONS, sections_upto

__all__ = [
    "BASE_KEY",
    "LEVELS",
    "Composed",
    "chain_key",
    "interpolate",
    "load_composed",
    "referenced_sections",
]

BASE_KEY = "base"
LEVELS = SECTIONS  # the pipeline order, from the stage table
# Keys holding a file path, relative to the folder of the file that wrote them.
_PATH_KEYS = (("params", "path"),)
_REFERENCE = re.compile(r"\$\{([^${}]*)\}")
_DOTTED = re.compile(r"^(data|model|train|eval)(\.[A-Za-z0-9_-]+)+$")

FileKey = tuple[str, int, int, int, int]  # path, mtime, size, inode, ctime


@dataclass(frozen=True)
class Composed:
    """A config file merged over its base chain.

    Attributes:
        data: the merged mapping (``base:`` removed); never mutate it, copy it.
        chain: the stat key (path, mtime, size, inode) of every file of the chain, the
            named file first; equal chains mean equal content.
        sections: the sections its ``${...}`` references name.
    """

    data: dict[str, Any]
    chain: tuple[FileKey, ...]
    sections: frozenset[str]


_composed: dict[FileKey, Composed] = {}


def _stat_key(path: str | Path) -> FileKey | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def _current(chain: tuple[FileKey, ...], first: FileKey) -> bool:
    """Whether every file of ``chain`` is unchanged; ``first`` is the named file's key,
    just taken (so a chain without ``base:`` costs no second ``stat``)."""
    return bool(chain) and chain[0] == first and all(_stat_key(key[0]) == key for key in chain[1:])


def chain_key(path: str | Path | None) -> tuple[Any, ...]:
    """What a config's content depends on: its file's stat and that of every base.

    Cheap on a warm memo (one ``stat`` per file). A missing or broken file gives a key
    that differs from any valid one, never an error.
    """
    if not path:
        return (None,)
    try:
        return load_composed(Path(path)).chain
    except ConfigError:
        return (str(path), None)


def load_composed(path: str | Path, *, what: str = "config") -> Composed:
    """Read ``path`` and its ``base:`` chain, merged (memoised on every file's stat; a
    memoised chain costs one ``stat`` per file, and no ``Path`` is built for it).

    Raises:
        ConfigError: a file is missing or invalid, ``base`` is not a path, or the chain
            comes back to a file already in it.
    """
    first = _stat_key(path)
    cached = _composed.get(first) if first else None
    if cached is not None and first is not None and _current(cached.chain, first):
        return cached
    composed = _compose(Path(path), what)
    if first is not None:
        _composed[first] = composed
    return composed


def _compose(path: Path, what: str) -> Composed:
    layers: list[dict[str, Any]] = []
    chain: list[FileKey] = []
    seen: list[Path] = []
    current = path
    while True:
        data = load_yaml_file(current, what=what)
        key = _stat_key(current)
        if key is not None:
            chain.append(key)
        seen.append(current.resolve())
        base = data.pop(BASE_KEY, None)
        if layers:  # a base file: its relative paths are relative to its own folder
            _absolutise_paths(data, current.parent)
        layers.append(data)
        if base is None:
            break
        where = f"{what} file {current}: key {BASE_KEY!r}"
        if not isinstance(base, str) or not base:
            raise ConfigError(
                f"{where} must be the path of another config file (relative to this "
                f"file's folder), not {base!r}"
            )
        target = Path(base).expanduser()
        if not target.is_absolute():
            target = current.parent / target
        if not target.is_file():
            raise ConfigError(
                f"{where}: base config {base!r} does not exist (looked at {target}); "
                "base paths are relative to the folder of the file that names them"
            )
        if target.resolve() in seen:
            cycle = " -> ".join(str(p) for p in [*seen, target.resolve()])
            raise ConfigError(
                f"{where}: base config {base!r} makes a cycle ({cycle}); "
                "remove 'base' from one of these files"
            )
        current = target
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        merged = merge(merged, layer)
    return Composed(merged, tuple(chain), frozenset(referenced_sections(merged)))


def _absolutise_paths(data: dict[str, Any], folder: Path) -> None:
    for keys in _PATH_KEYS:
        node: Any = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            value = node.get(keys[-1])
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                node[keys[-1]] = str(folder / value)


def merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` deep-merged over ``base``: mappings merge, lists and scalars replace."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def referenced_sections(value: Any) -> set[str]:
    """Sections named by the ``${...}`` references anywhere in ``value``."""
    found: set[str] = set()
    if isinstance(value, str):
        for match in _REFERENCE.finditer(value):
            found.add(match.group(1).strip().partition(".")[0])
    elif isinstance(value, dict):
        for item in value.values():
            found |= referenced_sections(item)
    elif isinstance(value, list):
        for item in value:
            found |= referenced_sections(item)
    return found


def has_references(value: Any) -> bool:
    """Whether ``value`` holds a ``${`` anywhere (a reference, or a malformed one)."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(has_references(v) for v in value.values())
    if isinstance(value, list):
        return any(has_references(v) for v in value)
    return False


def interpolate(
    section: str, config: dict[str, Any], upstream: dict[str, dict[str, Any]], where: str
) -> dict[str, Any]:
    """``config`` (of ``section``) with every ``${...}`` reference replaced by its value.

    Args:
        section: the section ``config`` belongs to.
        config: the section's merged, defaults-filled, overridden config.
        upstream: resolved configs of the sections before ``section``.
        where: the config, for messages.

    Raises:
        ConfigError: a reference is malformed, unknown, names a later section, or is
            part of a cycle.
    """
    return _Interpolator(section, config, upstream, where).run()


class _Interpolator:
    def __init__(
        self,
        section: str,
        config: dict[str, Any],
        upstream: dict[str, dict[str, Any]],
        where: str,
    ) -> None:
        self.section = section
        self.tree = {**upstream, section: config}
        self.where = where
        self.allowed = sections_upto(section)

    def run(self) -> dict[str, Any]:
        resolved = self.value(self.tree[self.section], self.section, ())
        assert isinstance(resolved, dict)
        return resolved

    def fail(self, key: str, message: str) -> ConfigError:
        shown = key.partition(".")[2] or key
        return ConfigError(f"{self.where}: key {shown!r}: {message}")

    def value(self, value: Any, key: str, stack: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            return {k: self.value(v, f"{key}.{k}", stack) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, f"{key}.{i}", stack) for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = _REFERENCE.fullmatch(value)
        if whole:
            return self.lookup(whole.group(1), key, stack)

        def text(match: re.Match[str]) -> str:
            found = self.lookup(match.group(1), key, stack)
            if isinstance(found, (dict, list)):
                raise self.fail(
                    key,
                    f"${{{match.group(1)}}} names a {type(found).__name__}, which cannot be "
                    "part of a longer string; make the reference the whole value",
                )
            return found if isinstance(found, str) else format_yaml_value(found)

        out = _REFERENCE.sub(text, value)
        if "${" in _REFERENCE.sub("", value):
            raise self.fail(
                key,
                f"{value!r} has an unclosed or nested '${{'; a reference is "
                "${section.dotted.key} (e.g. ${train.optimizer.lr})",
            )
        return out

    def lookup(self, dotted: str, key: str, stack: tuple[str, ...]) -> Any:
        dotted = dotted.strip()
        if not _DOTTED.match(dotted):
            raise self.fail(
                key,
                f"${{{dotted}}} is not a reference; write ${{section.dotted.key}} with "
                f"section one of {', '.join(LEVELS)} (e.g. ${{train.optimizer.lr}})",
            )
        if dotted in stack:
            cycle = " -> ".join(f"${{{d}}}" for d in [*stack, dotted])
            raise self.fail(key, f"references form a cycle ({cycle}); break it with a value")
        section, _, rest = dotted.partition(".")
        if section not in self.allowed:
            raise self.fail(
                key,
                f"${{{dotted}}} names the {section} config, which is resolved after the "
                f"{self.section} config; refer only to {', '.join(self.allowed)} values",
            )
        if section not in self.tree:
            raise self.fail(
                key, f"${{{dotted}}} needs the {section} config, which is not part of this run"
            )
        node: Any = self.tree[section]
        walked = section
        for part in rest.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                known = [str(k) for k in node] if isinstance(node, dict) else []
                close = difflib.get_close_matches(part, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.fail(
                    key,
                    f"${{{dotted}}} refers to a key that does not exist ({part!r} is not "
                    f"under {walked!r}){hint} Keys there: {', '.join(known) or '(none)'}",
                )
            walked = f"{walked}.{part}"
        if section == self.section:
            node = self.value(node, dotted, (*stack, dotted))
        return copy.deepcopy(node)

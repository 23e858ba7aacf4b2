"""Turn config files plus overrides into resolved, validated, hashed configs.

Resolution is what makes identity content-based: the hash is taken over the resolved
config (defaults filled in, builder/loader arguments completed from their signatures,
canonical key order), so comments, whitespace, key order or an explicitly written
default never change it, while editing any value does. A config's ``base:`` chain and its
``${...}`` references (:mod:`tasks.config.compose`) are resolved first: the identity is
the resolved content, whichever way it was written.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from tasks import registry
from tasks.config.compose import (
    LEVELS,
    Composed,
    has_references,
    interpolate,
    load_composed,
    merge,
    referenced_sections,
)
from tasks.config.schema import NAME_PATTERN, SECTIONS, TRAIN_IDENTITY_DEFAULTS
from tasks.config.yamlio import copy_plain, format_yaml_value, parse_yaml_value
from tasks.errors import ConfigError

__all__ = [
    "Overrides",
    "Resolved",
    "digest_of",
    "format_overrides",
    "clear_resolution_memo",
    "format_validation_error",
    "parse_overrides",
    "resolve_section",
    "resolve_sections",
]

_FILE_PARAM = "path"
_DEFAULT_SOURCE = "<built-in default>"


@dataclass(frozen=True)
class Resolved:
    """One resolved config section and its content identity.

    Attributes:
        section: ``data``, ``model``, ``train`` or ``eval``.
        name: the directory name stem (``name:`` key, else the file stem, else ``default``).
        config: the validated config with every default filled in.
        digest: sha256 over the canonical identity (hex).
        source: where it came from (a path or the built-in default), for messages.
        file_digests: content hashes of user data files the config points to.
    """

    section: str
    name: str
    config: dict[str, Any]
    digest: str
    source: str
    file_digests: dict[str, str] = field(default_factory=dict)


Overrides = dict[str, dict[str, Any]]


def parse_overrides(text: str) -> Overrides:
    """Parse ``"train.epochs=3 model.params.hidden=[64,32]"`` into per-section assignments.

    Pairs are separated by whitespace (quote a value that contains spaces); values are YAML,
    typed exactly as in a config file (:func:`tasks.config.yamlio.parse_yaml_value`).

    Raises:
        ConfigError: a pair is malformed or names an unknown section.
    """
    if text not in _parsed_overrides:
        _parsed_overrides[text] = _parse_overrides(text)
    # Fresh dicts per call (the values themselves are never mutated).
    return {section: dict(values) for section, values in _parsed_overrides[text].items()}


_parsed_overrides: dict[str, Overrides] = {}
_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def _parse_overrides(text: str) -> Overrides:
    result: Overrides = {name: {} for name in SECTIONS}
    try:
        pairs = shlex.split(text or "")
    except ValueError as err:
        raise ConfigError(f"--overrides {text!r} cannot be split into pairs: {err}") from err
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        section, _, dotted = key.partition(".")
        if not sep or not dotted:
            raise ConfigError(
                f"--overrides: {pair!r} is not of the form section.key=value (e.g. train.epochs=3)"
            )
        if section not in SECTIONS:
            raise ConfigError(
                f"--overrides: {pair!r} names section {section!r}; "
                f"sections are {', '.join(SECTIONS)}"
            )
        if not _KEY.match(dotted):
            raise ConfigError(
                f"--overrides: key {key!r} must be dotted names of letters, digits, '_' "
                "and '-' (e.g. train.optimizer.lr)"
            )
        result[section][dotted] = parse_yaml_value(raw, where=f"--overrides {key}")
    return result


def format_overrides(overrides: Overrides, sections: tuple[str, ...]) -> str:
    """Canonical override text restricted to ``sections`` (used to share upstream tasks).

    :func:`parse_overrides` reads it back as exactly ``overrides`` (types included: floats
    stay floats, ``nan``/``inf`` and big integers survive), and equal values always give
    equal text, so a sweep value and the same value typed by hand share one task id.
    """
    parts = []
    for section in sections:
        for key, value in sorted(overrides.get(section, {}).items()):
            parts.append(shlex.quote(f"{section}.{key}={format_yaml_value(value)}"))
    return " ".join(parts)


def digest_of(identity: Any) -> str:
    """sha256 (hex) of the canonical JSON form of ``identity``."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


# Parts of an error's location that name a branch of a union (a class name, or a model
# with validators: ``function-after[...]``), not a key the user wrote: config keys are
# lower case.
_BRANCH = re.compile(r"^(function-\w+\[.*\]|[A-Z][A-Za-z]*)$")


def format_validation_error(err: ValidationError, model: type[BaseModel], where: str) -> str:
    lines = []
    for item in err.errors():
        parts = [p for p in item["loc"] if not _BRANCH.match(str(p))]
        key = ".".join(str(p) for p in parts) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, parts[:-1])
            close = difflib.get_close_matches(str(item["loc"][-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = f" Allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{where}: unknown key {key!r}{hint}{known}")
        elif item["type"] == "missing":
            lines.append(f"{where}: required key {key!r} is missing; add it")
        else:
            got = item.get("input")
            lines.append(f"{where}: key {key!r}: {item['msg']} (got {got!r})")
    return "\n".join(lines)


def _allowed_keys(model: type[BaseModel], path: list[Any]) -> list[str]:
    current: Any = model
    for part in path:
        field_info = (
            current.model_fields.get(str(part)) if hasattr(current, "model_fields") else None
        )
        annotation = getattr(field_info, "annotation", None)
        # ``SearchConfig | None``: the model among the union's members.
        models = [a for a in (annotation, *get_args(annotation)) if hasattr(a, "model_fields")]
        if not models:
            return []
        current = models[0]
    return sorted(current.model_fields)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    parts = dotted.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            known = sorted(node) if isinstance(node, dict) else []
            close = difflib.get_close_matches(part, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            prefix = ".".join(parts[:i])
            raise ConfigError(
                f"{where}: key {dotted!r} does not exist in the resolved config{hint} "
                f"Keys{' under ' + repr(prefix) if prefix else ''}: "
                f"{', '.join(known) or '(none)'}. "
                "Overrides may only change existing keys"
            )
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


def _name_for(config: dict[str, Any], path: Path | None) -> str:
    if config.get("name"):
        return str(config["name"])
    if path is None:
        return "default"
    return _stem_name(path.stem)


@functools.lru_cache(maxsize=1024)
def _stem_name(file_stem: str) -> str:
    """A directory name stem from a config file's stem (asked once per file name)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", file_stem)[:64].lstrip("._-") or "config"
    if not re.match(NAME_PATTERN, stem):  # pragma: no cover - sanitised above
        stem = "config"
    return stem


def _validate(section: str, raw: dict[str, Any], where: str) -> dict[str, Any]:
    model = SECTIONS[section]
    try:
        # Python mode: JSON mode would turn nan and inf into None.
        return model.model_validate(raw).model_dump()
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, model, where)) from err


def _complete_params(entry: registry.Entry, params: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = [p for p in params if p not in entry.defaults and p not in entry.required]
    allowed = sorted([*entry.required, *entry.defaults])
    for name in unknown:
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{where}: unknown key 'params.{name}' for {entry.kind} {entry.name!r}{hint} "
            f"It accepts: {', '.join(allowed) or '(no parameters)'}"
        )
    missing = [p for p in entry.required if p not in params]
    if missing:
        raise ConfigError(
            f"{where}: {entry.kind} {entry.name!r} needs 'params.{missing[0]}'; add it to params"
        )
    completed = dict(entry.defaults)
    completed.update(params)
    return {k: completed[k] for k in sorted(completed)}


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _resolve_references(
    section: str, config: dict[str, Any], base_dir: Path | None, where: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Check registered names and fill in loader/builder parameters."""
    file_digests: dict[str, str] = {}
    if section == "data":
        entry = registry.get_entry("dataset", config["loader"], where=f"{where}: key 'loader'")
        config["params"] = _complete_params(entry, config["params"], where)
        if _FILE_PARAM in config["params"]:
            raw = config["params"][_FILE_PARAM]
            if not isinstance(raw, str) or not raw:
                raise ConfigError(f"{where}: key 'params.path' must be a file path string")
            file_path = Path(raw).expanduser()
            if not file_path.is_absolute() and base_dir is not None:
                file_path = base_dir / file_path
            if not file_path.is_file():
                raise ConfigError(
                    f"{where}: key 'params.path': data file {raw!r} does not exist "
                    f"(looked at {file_path}); relative paths are resolved from the "
                    "config file's folder"
                )
            config["params"][_FILE_PARAM] = str(file_path.resolve())
            file_digests[_FILE_PARAM] = _file_digest(file_path)
    elif section == "model":
        entry = registry.get_entry(
            "model", config["builder"], config["framework"], where=f"{where}: key 'builder'"
        )
        config["params"] = _complete_params(entry, config["params"], where)
        if config.get("objective") is not None:
            registry.get_entry(
                "objective",
                config["objective"],
                config["framework"],
                where=f"{where}: key 'objective'",
            )
    elif section == "train" and config.get("scheduler") is not None:
        scheduler = dict(config["scheduler"])
        entry = registry.get_entry(
            "scheduler", scheduler.pop("name"), where=f"{where}: key 'scheduler.name'"
        )
        warmup = scheduler.pop("warmup_epochs", 0)
        own = _complete_params(entry, scheduler, f"{where}: key 'scheduler'")
        config["scheduler"] = {"name": entry.name, "warmup_epochs": warmup, **own}
    elif section == "eval":
        for i, metric in enumerate(config["metrics"]):
            registry.get_entry("metric", metric, where=f"{where}: key 'metrics[{i}]'")
    return config, file_digests


def _identity(section: str, config: dict[str, Any], file_digests: dict[str, str]) -> Any:
    # A shallow copy: only top-level keys and ``params`` are replaced below, never mutated.
    identity = dict(config)
    identity.pop("name", None)
    if section == "model" and identity.get("inputs") in (None, ["x"]):
        # The default, written or not, is left out: identities from before the key existed
        # stay the same.
        identity.pop("inputs", None)
    if section == "train":
        for key, default in TRAIN_IDENTITY_DEFAULTS.items():
            if key in identity and identity[key] == default:
                identity.pop(key)
    if file_digests:
        # The data file's content, not where it lies, identifies the dataset.
        content = "sha256:" + file_digests[_FILE_PARAM]
        identity["params"] = {**identity["params"], _FILE_PARAM: content}
    return identity


def _where(section: str, file_path: Path | None) -> str:
    return f"{section} config {file_path}" if file_path else f"{section} config {_DEFAULT_SOURCE}"


def _read(section: str, file_path: str | Path | None) -> Composed | None:
    if file_path is None:
        if section in ("data", "model"):
            raise ConfigError(f"a {section} config is required; pass --{section}-config FILE")
        return None
    return load_composed(file_path, what=f"{section} config")


def _skeleton(section: str, raw: dict[str, Any], where: str) -> dict[str, Any]:
    """The keys a resolved config will have, with their defaults: schema defaults, plus
    the registered loader's or builder's parameter defaults when it is named plainly."""
    model = SECTIONS[section]
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.is_required():
            continue
        value = info.get_default(call_default_factory=True)
        out[name] = value.model_dump() if isinstance(value, BaseModel) else value
    if section == "data" and isinstance(raw.get("loader"), str) and "${" not in raw["loader"]:
        entry = registry.get_entry("dataset", raw["loader"], where=f"{where}: key 'loader'")
        out["params"] = dict(entry.defaults)
    elif (
        section == "model"
        and isinstance(raw.get("builder"), str)
        and "${" not in raw["builder"]
        and raw.get("framework") in ("torch", "tensorflow")
    ):
        entry = registry.get_entry(
            "model", raw["builder"], raw["framework"], where=f"{where}: key 'builder'"
        )
        out["params"] = dict(entry.defaults)
    return out


def _resolve_one(
    section: str,
    file_path: Path | None,
    composed: Composed | None,
    overrides: dict[str, Any],
    upstream: dict[str, dict[str, Any]],
) -> Resolved:
    where = _where(section, file_path)
    raw = copy_plain(composed.data) if composed else {}  # YAML data: plain, checked
    base_dir = file_path.parent if file_path else None
    if has_references(raw) or has_references(overrides):
        # References may name defaults and overridden values: fill in the keys first,
        # apply the overrides, then interpolate and validate the result as if written out.
        filled = merge(_skeleton(section, raw, where), raw)
        for dotted, value in overrides.items():
            _set_dotted(filled, dotted, value, f"--overrides {section}.{dotted} (for {where})")
        plain = interpolate(section, filled, upstream, where)
        config, file_digests = _resolve_references(
            section, _validate(section, plain, where), base_dir, where
        )
    else:
        # Many experiments override the same file (a sweep, a status check of one): its
        # validated form is kept per version of the file chain. Not when it names a data
        # file, whose own content is part of the identity.
        key = (section, composed.chain) if composed is not None and overrides else None
        validated = _validated.get(key) if key is not None else None
        if validated is not None:
            config, file_digests = copy_plain(validated), {}
        else:
            config, file_digests = _resolve_references(
                section, _validate(section, raw, where), base_dir, where
            )
            if key is not None and not file_digests:
                _validated[key] = copy_plain(config)
        if overrides:
            for dotted, value in overrides.items():
                _set_dotted(config, dotted, value, f"--overrides {section}.{dotted} (for {where})")
            config, file_digests = _resolve_references(
                section, _validate(section, config, where + " after --overrides"), base_dir, where
            )
    name = _name_for(config, file_path)
    digest = digest_of(_identity(section, config, file_digests))
    return Resolved(section, name, config, digest, str(file_path or _DEFAULT_SOURCE), file_digests)


_memo: dict[tuple[Any, ...], Resolved] = {}
# A config file chain's validated content before overrides, by (section, chain stat keys).
_validated: dict[tuple[Any, ...], dict[str, Any]] = {}


def clear_resolution_memo() -> None:
    """Forget every resolved section (a cold start, as a benchmark wants to measure)."""
    _memo.clear()
    _validated.clear()


def resolve_sections(
    levels: tuple[str, ...], paths: dict[str, str | Path | None], overrides: Overrides
) -> dict[str, Resolved]:
    """Resolve ``levels`` (a prefix of data, model, train, eval) in order.

    Memoised on what each section depends on: the stat of its file and of every base file,
    its overrides, and the memo keys of the earlier sections its references name. Editing
    a base file, or a value a reference reads, resolves the section afresh.

    Args:
        levels: the sections, in pipeline order.
        paths: section → config file (None: built-in default, train and eval only).
        overrides: per-section dotted key → value, as from :func:`parse_overrides`.

    Returns:
        section → resolved section.

    Raises:
        ConfigError: a file, key, override or reference is invalid.
    """
    sections: dict[str, Resolved] = {}
    keys: dict[str, tuple[Any, ...]] = {}
    for level in levels:
        raw_path = paths.get(level)
        composed = _read(level, raw_path or None)
        assignments = overrides.get(level, {})
        named = set(composed.sections if composed else ()) | referenced_sections(assignments)
        earlier = [s for s in LEVELS[: LEVELS.index(level)] if s in named and s in sections]
        key = (
            level,
            composed.chain if composed else None,
            repr(sorted(assignments.items())),
            tuple(keys[s] for s in earlier),
        )
        keys[level] = key
        resolved = _memo.get(key)  # one hash of the (nested) key, not two
        if resolved is None:
            upstream = {s: sections[s].config for s in earlier}
            file_path = Path(raw_path) if raw_path else None
            resolved = _memo[key] = _resolve_one(level, file_path, composed, assignments, upstream)
        sections[level] = resolved
    return sections


def resolve_section(
    section: str,
    path: str | Path | None,
    overrides: dict[str, Any] | None = None,
) -> Resolved:
    """Read, override, validate and hash one config section on its own.

    References to other sections need :func:`resolve_sections`.

    Args:
        section: ``data``, ``model``, ``train`` or ``eval``.
        path: the YAML file; None means the built-in default (train and eval only).
        overrides: dotted key → value for this section.

    Returns:
        The resolved section.

    Raises:
        ConfigError: anything about the file, its keys or the overrides is wrong.
    """
    file_path = Path(path) if path else None
    composed = _read(section, file_path)
    return _resolve_one(section, file_path, composed, dict(overrides or {}), {})

"""Registries of dataset loaders, model builders, objectives, metrics, optimizers and
learning-rate schedulers.

A config can only name something registered here: this allowlist is what keeps a config
(or an experiment somebody sent you) from calling arbitrary code such as ``os:system``.
Users add their own entries with the decorators and make their modules known through
``[forge] plugins`` in ``luigi.cfg`` or the ``FORGE_PLUGINS`` environment variable.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import os
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from tasks.backends import BUILTIN_MODEL_MODULES, FRAMEWORKS
from tasks.errors import ConfigError, RegistryError

__all__ = [
    "FRAMEWORKS",
    "Entry",
    "get_entry",
    "load_plugins",
    "names",
    "register_dataset",
    "register_metric",
    "register_model",
    "register_objective",
    "register_optimizer",
    "register_scheduler",
]

Kind = Literal["dataset", "model", "objective", "metric", "optimizer", "scheduler"]
F = TypeVar("F", bound=Callable[..., Any])

# Arguments Forge fills in itself; they are not user parameters.
_RESERVED: dict[str, frozenset[str]] = {
    "dataset": frozenset(),
    "model": frozenset({"input_shape", "num_classes", "meta"}),
    "objective": frozenset({"model", "batch"}),
    "metric": frozenset({"outputs", "batch"}),
    # torch optimizers receive ``params``; Keras ones are built before their variables.
    "optimizer": frozenset({"params", "lr", "weight_decay", "momentum"}),
    "scheduler": frozenset({"base_lr", "epochs", "steps_per_epoch", "monitor", "mode"}),
}

_BUILTIN_MODULES = (
    "tasks.data.loaders",
    *BUILTIN_MODEL_MODULES,
    "tasks.metrics",
    "tasks.loop.schedules",
)


@dataclass(frozen=True)
class Entry:
    """One registered callable and what Forge knows about its parameters."""

    kind: Kind
    name: str
    framework: str | None
    func: Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    reserved: tuple[str, ...] = ()

    @property
    def qualname(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"

    def fingerprint(self) -> str | None:
        """Hash of the function's source code, or None when the source is unavailable.

        Memoised per source file version (path, mtime): reading the source back through
        ``inspect`` tokenises it, which costs more than loading a small model.
        """
        code = getattr(self.func, "__code__", None)
        filename = getattr(code, "co_filename", None)
        try:
            version = os.stat(filename).st_mtime_ns if filename else None
        except OSError:
            version = None
        key = (self.qualname, filename, version)
        if key not in _fingerprints:
            try:
                source = textwrap.dedent(inspect.getsource(self.func))
            except (OSError, TypeError):
                return None
            _fingerprints[key] = hashlib.sha256(source.encode()).hexdigest()[:16]
        return _fingerprints[key]


_fingerprints: dict[tuple[str, str | None, int | None], str] = {}


_registry: dict[tuple[Kind, str | None, str], Entry] = {}
_plugins_loaded = False


def _make_entry(kind: Kind, name: str, framework: str | None, func: Callable[..., Any]) -> Entry:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise RegistryError(
            f"cannot register {kind} {name!r}: names use letters, digits, '_' and '-' only"
        )
    if framework is not None and framework not in FRAMEWORKS:
        raise RegistryError(
            f"cannot register {kind} {name!r}: framework must be one of {FRAMEWORKS}"
        )
    defaults: dict[str, Any] = {}
    required: list[str] = []
    reserved: list[str] = []
    for pname, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if pname in _RESERVED[kind]:
            reserved.append(pname)
        elif param.default is inspect.Parameter.empty:
            required.append(pname)
        else:
            defaults[pname] = _plain(param.default)
    return Entry(kind, name, framework, func, defaults, tuple(required), tuple(reserved))


def _plain(value: Any) -> Any:
    """Defaults are stored in resolved configs, so tuples become lists like YAML's."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _register(kind: Kind, name: str, framework: str | None) -> Callable[[F], F]:
    def decorator(func: F) -> F:
        entry = _make_entry(kind, name, framework, func)
        _registry[(kind, framework, name)] = entry
        return func

    return decorator


def register_dataset(name: str) -> Callable[[F], F]:
    """Register a dataset loader returning a dict of equally long numpy arrays.

    Its keyword arguments become the ``params`` a data config may set.
    """
    return _register("dataset", name, None)


def register_model(name: str, framework: str) -> Callable[[F], F]:
    """Register a model builder ``build(input_shape, num_classes, **params)`` for a framework."""
    return _register("model", name, framework)


def register_objective(name: str, framework: str) -> Callable[[F], F]:
    """Register a training objective ``(model, batch) -> {"loss": ..., ...}`` for a framework."""
    return _register("objective", name, framework)


def register_metric(name: str) -> Callable[[F], F]:
    """Register an evaluation metric ``(outputs, batch) -> float`` over numpy arrays."""
    return _register("metric", name, None)


def register_optimizer(name: str, framework: str) -> Callable[[F], F]:
    """Register an optimizer factory for ``train.optimizer.name``.

    torch factories receive ``params`` (the model's parameters); both receive ``lr``,
    ``weight_decay`` and ``momentum`` from the train config, and return the framework's
    optimizer.
    """
    return _register("optimizer", name, framework)


def register_scheduler(name: str) -> Callable[[F], F]:
    """Register a learning-rate schedule for ``train.scheduler.name`` (both frameworks).

    The factory receives ``base_lr``, ``epochs``, ``steps_per_epoch``, ``monitor`` and
    ``mode`` when it declares them, plus the scheduler's own keys, and returns a
    :class:`tasks.loop.schedules.Schedule`.
    """
    return _register("scheduler", name, None)


def _configured_plugins() -> list[str]:
    import luigi.configuration

    modules: list[str] = []
    raw = luigi.configuration.get_config().get("forge", "plugins", "")
    modules.extend(str(raw).replace("\n", ",").split(","))
    modules.extend(os.environ.get("FORGE_PLUGINS", "").split(","))
    return [m.strip() for m in modules if m.strip()]


def load_plugins(extra: Iterable[str] = ()) -> None:
    """Import the built-in registrations and the user's plugin modules (once).

    Raises:
        ConfigError: a configured plugin module cannot be imported.
    """
    global _plugins_loaded
    if not _plugins_loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        for module in _configured_plugins():
            _import_plugin(module)
        _plugins_loaded = True
    for module in extra:
        _import_plugin(module)


def _import_plugin(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"plugin module {module!r} (from [forge] plugins in luigi.cfg or FORGE_PLUGINS) "
            f"cannot be imported: {err}; check the module name and that it is on PYTHONPATH"
        ) from err


def names(kind: Kind, framework: str | None = None) -> list[str]:
    """Sorted names registered for ``kind`` (and ``framework``, where it applies)."""
    load_plugins()
    return sorted(n for (k, fw, n) in _registry if k == kind and fw == framework)


def get_entry(kind: Kind, name: str, framework: str | None = None, *, where: str = "") -> Entry:
    """Look up a registered entry.

    Args:
        kind: dataset, model, objective or metric.
        name: the name a config gives.
        framework: for models and objectives, the framework they belong to.
        where: "file: key" prefix for the error message.

    Raises:
        RegistryError: nothing of that name is registered; the message lists what is.
    """
    load_plugins()
    entry = _registry.get((kind, framework, name))
    if entry is not None:
        return entry
    known = names(kind, framework)
    hint = ""
    close = difflib.get_close_matches(str(name), known, n=1)
    if close:
        hint = f" (did you mean {close[0]!r}?)"
    scope = f" for framework {framework!r}" if framework else ""
    prefix = f"{where}: " if where else ""
    raise RegistryError(
        f"{prefix}{kind} {name!r} is not registered{scope}{hint}. "
        f"Registered: {', '.join(known) or '(none)'}. Only registered names can be used; "
        f"register your own with @register_{kind}(...) in a module listed in [forge] plugins"
    )

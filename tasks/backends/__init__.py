"""Framework backends, imported only when a model config names their framework.

``get_backend("torch")`` imports torch; nothing else in Forge does, so ``import pipelines``
and no-op reruns never pay for a framework import.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from typing import TYPE_CHECKING

from tasks.errors import BackendUnavailableError

if TYPE_CHECKING:
    from tasks.backends.base import Backend

__all__ = ["BUILTIN_MODEL_MODULES", "FRAMEWORKS", "get_backend", "installed"]

# framework → (backend module, backend class, the package it needs)
_MODULES = {
    "torch": ("tasks.backends._torch", "TorchBackend", "torch"),
    "tensorflow": ("tasks.backends._tensorflow", "TensorFlowBackend", "tensorflow"),
}
# Modules registering the built-in builders and optimizers of each framework (they import
# no framework at module level).
BUILTIN_MODEL_MODULES = (
    "tasks.backends.torch_models",
    "tasks.backends.tf_models",
    "tasks.backends.torch_optimizers",
    "tasks.backends.tf_optimizers",
)
# The frameworks Forge knows, in the order error messages list them.
FRAMEWORKS: tuple[str, ...] = tuple(_MODULES)
_cache: dict[str, Backend] = {}


@functools.cache
def installed(framework: str) -> bool:
    """Whether ``framework``'s package can be imported, without importing it (asked once)."""
    if framework not in _MODULES:
        return False
    return importlib.util.find_spec(_MODULES[framework][2]) is not None


def get_backend(framework: str, *, asked_by: str = "the model config") -> Backend:
    """The backend for ``framework``, importing the framework on first use.

    Raises:
        BackendUnavailableError: the framework is not installed.
    """
    if framework in _cache:
        return _cache[framework]
    if framework not in _MODULES:
        raise BackendUnavailableError(
            f"{asked_by} asks for framework {framework!r}; known: {', '.join(_MODULES)}"
        )
    module_name, class_name, extra = _MODULES[framework]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        if (err.name or "").split(".")[0] not in (extra, "keras", "safetensors"):
            raise  # a bug inside Forge or a plugin, not a missing framework: keep it visible
        raise BackendUnavailableError(
            f"{asked_by} asks for framework {framework!r}, which is not installed "
            f"({err}); install it with `pip install -e .[{extra}]`"
        ) from err
    backend: Backend = getattr(module, class_name)()
    _cache[framework] = backend
    return backend

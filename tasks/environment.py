"""The software a training run used: installed packages, Python, CUDA/cuDNN and GPUs.

What ClearML, Aim and Sacred record per run, captured without a subprocess: the packages
come from :mod:`importlib.metadata` (``pip freeze``'s list, ~0.1 s for 150 packages), the
accelerators from the backend (the only code that may import a framework).
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tasks.backends.base import Backend
from tasks.store.names import ENVIRONMENT_FILE
from tasks.store.packages import write_packages

__all__ = ["capture_environment", "installed_packages"]

logger = logging.getLogger("forge")


_memo: dict[tuple[tuple[str, int], ...], dict[str, str]] = {}


def _path_state() -> tuple[tuple[str, int], ...]:
    """``sys.path`` with each folder's modification time.

    Installing, upgrading or removing a distribution adds or removes a ``.dist-info``
    folder, which changes the modification time of the folder holding it; a process
    that trains many experiments (a sweep worker) reads the package list once and again
    only when this key changes.
    """
    state = []
    for entry in sys.path:
        try:
            state.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            state.append((entry, -1))
    return tuple(state)


def installed_packages() -> dict[str, str]:
    """Every installed distribution as ``{name: version}``; the first one on ``sys.path``
    wins when a name is installed twice (the one ``import`` finds).

    Memoised per process on :func:`_path_state`, so a sweep worker pays the ~0.2 s scan
    once, not once per experiment.
    """
    state = _path_state()
    cached = _memo.get(state)
    if cached is not None:
        return dict(cached)
    packages: dict[str, str] = {}
    seen: set[str] = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue  # a broken .dist-info without metadata: pip freeze skips it too
        key = name.lower().replace("_", "-").replace(".", "-")
        if key not in seen:
            seen.add(key)
            packages[name] = dist.version
    _memo.clear()
    _memo[state] = packages
    return dict(packages)


def capture_environment(directory: Path, backend: Backend) -> dict[str, Any]:
    """Write the experiment's ``environment.txt`` and return run.json's ``environment``.

    Args:
        directory: the experiment folder.
        backend: the framework the run used (asked for CUDA, cuDNN and GPU names).

    Returns:
        ``python`` (executable, version), ``packages_file`` and ``packages`` (how many),
        ``cuda``, ``cudnn`` and ``gpus``.
    """
    packages = installed_packages()
    write_packages(directory, packages)
    try:
        accelerators = backend.accelerators()
    except Exception as err:  # a driver query failing must not fail a finished training
        logger.warning("CUDA/GPU details not recorded: %s: %s", type(err).__name__, err)
        accelerators = {"cuda": None, "cudnn": None, "gpus": [], "error": str(err)}
    return {
        "python": {"executable": sys.executable, "version": platform.python_version()},
        "packages_file": ENVIRONMENT_FILE,
        "packages": len(packages),
        **accelerators,
    }

"""The software a training run used: installed packages, Python, CUDA/cuDNN and GPUs.

What ClearML, Aim and Sacred record per run, captured without a subprocess: the packages
come from :mod:`importlib.metadata` (``pip freeze``'s list, ~0.1 s for 150 packages), the
accelerators from the backend (the only code that may import a framework).
"""

from __future__ import annotations

import logging
import platform
import sys
from pathlib import Path
from typing import Any

from tasks.backends.base import Backend
from tasks.provenance import installed_packages
from tasks.store.names import ENVIRONMENT_FILE
from tasks.store.packages import write_packages

__all__ = ["capture_environment", "installed_packages"]

logger = logging.getLogger("forge")


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

"""A description of the machine and library versions, recorded with every result."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

__all__ = ["describe"]

_PACKAGES = ("luigi", "torch", "tensorflow", "keras", "h5py", "numpy", "pydantic")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def describe() -> dict[str, Any]:
    """CPU model, core count, memory, OS, Python and package versions (no framework import)."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        versions[name] = None
        for dist in (name, f"{name}-cpu"):  # tensorflow ships as tensorflow-cpu too
            try:
                versions[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
    }

"""How much memory a data file may ask for, checked before anything is allocated.

A file's header says how large its arrays are (``.npy`` headers inside ``.npz``, HDF5
dataset metadata), and a damaged or hostile file can declare terabytes. File loaders read
the declared size first and refuse anything above :func:`max_data_bytes`, and refuse a
header that promises more data than the file holds.
"""

from __future__ import annotations

import os

from tasks.errors import DataError

__all__ = ["check_declared_size", "max_data_bytes"]

_FALLBACK_BYTES = 4 << 30  # when the physical memory cannot be asked (non-POSIX systems)


def max_data_bytes() -> int:
    """The limit: ``[forge] max_data_mb`` when set (> 0), else half the physical memory."""
    from tasks.settings import forge

    configured = int(forge().max_data_mb)
    if configured > 0:
        return configured << 20
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return _FALLBACK_BYTES
    return max(1, physical // 2)


def check_declared_size(path: str, what: str, nbytes: int) -> None:
    """Refuse reading ``what`` of ``path`` when it needs more than the limit.

    Raises:
        DataError: ``nbytes`` is above :func:`max_data_bytes`.
    """
    limit = max_data_bytes()
    if nbytes > limit:
        raise DataError(
            f"data file {path}: {what} would need {nbytes / (1 << 20):,.0f} MiB of memory, "
            f"more than the limit of {limit / (1 << 20):,.0f} MiB; if the file is right, "
            "raise [forge] max_data_mb in luigi.cfg (default: half the physical memory), "
            "otherwise the file's header is damaged"
        )

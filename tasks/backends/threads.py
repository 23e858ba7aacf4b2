"""CPU threads for a framework in one of Luigi's forked task processes.

torch and TensorFlow each start a thread per core. With ``--workers N`` Luigi forks one
process per running task, so N processes each run a thread per core and spend most of
their time taking the cores from one another: on two cores, two forked sweep shards ran
several times slower than one. A forked task process therefore gets its share of the
cores, unless the user chose a thread count (``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os

__all__ = ["forked_worker_threads"]

logger = logging.getLogger("forge")


def _workers() -> int:
    """The ``--workers`` of the Luigi command this process belongs to (1 when unknown)."""
    try:
        import luigi.interface

        return max(int(luigi.interface.core().workers), 1)
    except Exception:  # noqa: BLE001 - no Luigi configuration: not a Luigi worker
        return 1


def forked_worker_threads() -> int | None:
    """The CPU threads a framework should use here, or None for its own default.

    A number only in a process Luigi forked for a task (``--workers N`` > 1) when
    ``OMP_NUM_THREADS`` is unset: the cores this process may run on divided by N, at
    least 1.
    """
    if multiprocessing.parent_process() is None or "OMP_NUM_THREADS" in os.environ:
        return None
    workers = _workers()
    if workers <= 1:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max((cores or 1) // workers, 1)
    logger.info(
        "%d CPU threads for this task process: %d cores shared by --workers %d (set "
        "OMP_NUM_THREADS to choose)", threads, cores, workers,
    )  # fmt: skip
    return threads

"""CPU threads in Luigi's forked task processes: a share of the cores each, so that
``--workers N`` processes do not each start a thread per core."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import REPO

_PROBE = """
import multiprocessing, os, sys
import luigi.configuration
from tasks.backends.threads import forked_worker_threads
luigi.configuration.get_config().set("core", "workers", sys.argv[1])
def child(queue):
    queue.put(forked_worker_threads())
ctx = multiprocessing.get_context("fork")  # as Luigi forks its task processes
queue = ctx.Queue()
proc = ctx.Process(target=child, args=(queue,))
proc.start(); got = queue.get(); proc.join()
print(forked_worker_threads(), got, len(os.sched_getaffinity(0)))
"""


def _probe(workers: int, tmp_path: Path, **env: str) -> list[str]:
    full = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PROBE), str(workers)],
        cwd=tmp_path,
        env={**full, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs sched_getaffinity")
def test_a_forked_task_process_gets_its_share_of_the_cores(tmp_path: Path) -> None:
    parent, child, cores = _probe(2, tmp_path)
    assert parent == "None"  # the scheduling process keeps the framework's default
    assert child == str(max(int(cores) // 2, 1))


def test_one_worker_or_a_chosen_thread_count_changes_nothing(tmp_path: Path) -> None:
    assert _probe(1, tmp_path)[:2] == ["None", "None"]
    assert _probe(4, tmp_path, OMP_NUM_THREADS="3")[:2] == ["None", "None"]

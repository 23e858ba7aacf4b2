"""Fixtures shared by every test: a temporary results directory, the real luigi CLI, and
a fresh Luigi instance cache per test (as Luigi's own ``LuigiTestCase`` does)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from luigi.task_register import Register

from tests.support import CliResult, run_luigi


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the files with the most end-to-end (``slow``) tests first, each file's tests
    in their written order.

    The suite runs with ``pytest-xdist --dist loadfile --no-loadscope-reorder``: a file
    goes to whichever worker is free, in this order. In xdist's own order (most tests
    first) the long end-to-end files, which have few tests each, came last, and one worker
    finished the last of them alone while the other idled. Started first, they overlap,
    and the many short unit-test files fill the end. The order is the same on every
    worker (xdist requires that), and no test depends on it.
    """
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])  # stable: each file stays in one piece


@pytest.fixture(autouse=True)
def _fresh_luigi_instances() -> Iterator[None]:
    """Luigi caches task instances by parameters; a test must not see another's."""
    Register.clear_instance_cache()
    yield
    Register.clear_instance_cache()


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    """An empty results directory for one test."""
    return tmp_path / "results"


@pytest.fixture
def luigi_cli() -> Callable[..., CliResult]:
    """Run the real luigi command: ``luigi_cli("Train", "--data-config", ..., results_dir=...)``."""
    return run_luigi

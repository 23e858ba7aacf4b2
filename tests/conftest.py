"""Fixtures shared by every test: a temporary results directory, the real luigi CLI, and
a fresh Luigi instance cache per test (as Luigi's own ``LuigiTestCase`` does)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from luigi.task_register import Register

from tests.support import CliResult, run_luigi


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

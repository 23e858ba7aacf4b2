"""The entry points' process-wide settings: here, the quick exit (``tasks.entry.quick_exit``).

Each check runs a fresh interpreter and asks, from an exit handler registered before the
entry point (so it runs after Forge's), how many objects the shutdown collections will
leave alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import REPO, last_line_printed

_ASK_AT_EXIT = (
    "import atexit, gc, os\n"
    "atexit.register(lambda: os.write(1, b'\\nfrozen %d\\n' % gc.get_freeze_count()))\n"
)


def _frozen_at_exit(code: str) -> int:
    line = last_line_printed(_ASK_AT_EXIT + code, REPO)
    assert line.startswith("frozen "), line
    return int(line.split()[1])


@pytest.mark.parametrize(
    "entry",
    [
        "import pipelines",
        "import tasks.entry\ntasks.entry.setup_forge_command()",
    ],
    ids=["luigi-module", "forge-command"],
)
def test_an_entry_point_leaves_every_object_out_of_the_shutdown_collections(entry: str) -> None:
    assert _frozen_at_exit(f"{entry}\n") > 10_000  # every object alive at exit, not a handful


def test_importing_the_library_leaves_the_exit_as_python_has_it() -> None:
    assert _frozen_at_exit("import tasks, tasks.backends._torch, tasks.cli.app\n") == 0


def test_files_a_run_logs_to_are_complete_after_the_quick_exit(tmp_path: Path) -> None:
    # With logging's flush after each record switched off, the message's tail reaches the
    # file only when logging's exit hook closes it: an exit skipping the hooks (os._exit)
    # would lose it.
    log = tmp_path / "run.log"
    code = (
        "import logging, pipelines\n"
        f"handler = logging.FileHandler({str(log)!r}, delay=True)\n"
        "handler.flush = lambda: None\n"
        "logging.getLogger('forge').addHandler(handler)\n"
        "logging.getLogger('forge').warning('x' * 100)\n"
        "print('done')\n"
    )
    assert last_line_printed(code, REPO) == "done"
    assert log.read_text() == "x" * 100 + "\n"

"""The house rules that keep the code base navigable, checked on the source itself:
imports run one way, importing the library changes nothing global, and the public API is
what ``tasks.__all__`` says."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import tasks
from tasks.backends import FRAMEWORKS
from tasks.config.schema import ModelConfig
from tests.support import REPO, last_line_printed

PACKAGE = REPO / "tasks"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_nothing_below_the_cli_imports_the_cli() -> None:
    offenders = [
        (str(p.relative_to(REPO)), m)
        for p in _modules(PACKAGE)
        if "cli" not in p.relative_to(PACKAGE).parts
        for m in _imports(p)
        if m == "tasks.cli" or m.startswith("tasks.cli.")
    ]
    assert offenders == []


def test_the_store_imports_no_task_backend_or_cli() -> None:
    allowed = ("tasks.store", "tasks.errors", "tasks.stages", "tasks.config", "tasks.registry",
               "tasks.settings")  # fmt: skip
    offenders = [
        (str(p.relative_to(REPO)), m)
        for p in _modules(PACKAGE / "store")
        for m in _imports(p)
        if m.startswith("tasks") and not m.startswith(allowed)
    ]
    assert offenders == []


def test_backends_never_import_each_other() -> None:
    torch_side = {"tasks.backends._torch", "tasks.backends.torch_models", "torch"}
    tf_side = {"tasks.backends._tensorflow", "tasks.backends.tf_models", "tensorflow", "keras"}
    for path, other in (
        (PACKAGE / "backends" / "_torch.py", tf_side),
        (PACKAGE / "backends" / "_tensorflow.py", torch_side),
    ):
        assert not (_imports(path) & other), path


def test_framework_names_appear_only_in_backends_and_the_schema() -> None:
    offenders = []
    for path in _modules(PACKAGE):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "backends" or rel == Path("config/schema.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value in FRAMEWORKS for c in node.comparators
            ):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
    assert get_args(ModelConfig.model_fields["framework"].annotation) == FRAMEWORKS


def test_importing_the_library_changes_nothing_global() -> None:
    code = """
import json, logging, os, sys, warnings
# Third-party imports first: they may set warning filters themselves (luigi, torch do).
import h5py, luigi.configuration, numpy, pydantic, torch, typer, yaml
before = (dict(os.environ), sys.excepthook, sys.unraisablehook, list(warnings.filters),
          {n: list(logging.getLogger(n).filters) for n in ("luigi-interface", "luigi")},
          luigi.configuration.get_config().has_section("retcode"))
import tasks, tasks.backends._torch, tasks.cli.app
after = (dict(os.environ), sys.excepthook, sys.unraisablehook, list(warnings.filters),
         {n: list(logging.getLogger(n).filters) for n in ("luigi-interface", "luigi")},
         luigi.configuration.get_config().has_section("retcode"))
print(json.dumps([a == b for a, b in zip(before, after)]))
import pipelines
print(json.dumps(luigi.configuration.get_config().get("retcode", "task_failed", None)))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    unchanged, retcode = proc.stdout.strip().splitlines()[-2:]
    assert json.loads(unchanged) == [True] * 6
    assert json.loads(retcode) not in (None, "0")  # the luigi entry point sets them


def test_the_public_api_is_exactly_all() -> None:
    # Most public names are imported on first use: each one in __all__ must resolve, and
    # then the package may hold no other public name.
    for name in tasks.__all__:
        assert getattr(tasks, name) is not None, name
    assert set(dir(tasks)) >= set(tasks.__all__)
    public = {name for name in vars(tasks) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(tasks, name)).__name__ == "module"}
    assert set(tasks.__all__) == public - modules - {"annotations"}
    for name in ("DataMeta", "LoadTrained", "CodeDriftWarning", "ForgeWarning", "Experiment"):
        assert name in tasks.__all__
    assert issubclass(tasks.CodeDriftWarning, tasks.ForgeWarning)


def test_tests_share_helpers_through_the_support_module() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in sorted((REPO / "tests").rglob("*.py"))
        if any(
            m == "conftest" or m.endswith(".conftest") or m in ("crashkit", "forge_support")
            for m in _imports(p)
        )
    ]
    assert offenders == []


def test_the_store_and_the_cli_import_no_step_nor_luigi() -> None:
    """``forge ls`` and ``LoadTrained`` read the store: importing them must not pay for
    Luigi nor any step (``tasks`` imports its public names lazily)."""
    code = (
        "import sys\n"
        "import tasks.cli.app, tasks.load_trained\n"
        "import tasks.entry\n"
        "tasks.entry.setup_forge_command()\n"
        "heavy = ('luigi', 'tasks.base', 'tasks.train', 'tasks.sweep')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    assert last_line_printed(code, REPO) == "[]"

"""A full disk anywhere is one StorageError line and a non-zero exit, never a crash.

Each case runs the real ``luigi`` command on a real, small ``tmpfs`` mounted for the test,
filled up (a filler file) so that space runs out at one stage: while PrepareData writes
``data.h5``, while Train writes checkpoints, while Train writes its code-free export (a plugin
model fills the disk from inside the export's own forward pass, after the final weights are
written, leaving room for ``run.json`` but not the export: see ``disk_fill_plugins``), and
while Evaluate writes ``predictions.h5``. HDF5 used to crash the process
(SIGSEGV) there, and a failed export used to leave Train ``done``. The command must exit
with Luigi's failure code, print exactly one ``StorageError`` line, leave no temporary
behind, and no step folder may look complete (``_SUCCESS``) without its files.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.crashkit import (
    cli_env,
    luigi_argv,
    temp_entries,
    train_args,
)
from tests.reliability.disk_fill_plugins import NAME as FILLING_MODEL
from tests.reliability.disk_fill_plugins import fill
from tests.support import FRAMEWORKS, REPO

SIZE = "16m"
OVERRIDES = "train.epochs=2"
# What a complete step folder must hold, by the file names it is made of.
REQUIRED = {
    "data": ["data.h5", "meta.json"],
    "model": ["initial.*"],
    "train": ["config.yaml", "run.json", "model/best.*", "model/last.*"],
    "eval": ["metrics.json", "predictions.h5"],
}


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh tmpfs of :data:`SIZE`, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def luigi(
    task: str,
    framework: str,
    results: Path,
    model_config: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Run ``luigi ... task`` on moons with the framework's MLP (or ``model_config``)."""
    args = train_args(framework, OVERRIDES)
    if model_config is not None:
        args[args.index("--model-config") + 1] = str(model_config)
    if task == "PrepareData":
        args = args[:2]  # --data-config only
    proc = subprocess.run(
        luigi_argv(task, args, results),
        cwd=REPO,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def check_failed_cleanly(code: int, out: str, results: Path, names: str) -> None:
    assert 10 <= code < 40, f"exit {code} is not Luigi's failure code:\n{out}"
    errors = [line for line in out.splitlines() if "StorageError:" in line]
    assert len(errors) == 1, out
    assert names in errors[0] and ("No space left" in errors[0]), errors[0]
    assert "Traceback" not in out and "Fatal Python error" not in out, out
    assert temp_entries(results) == [], "a failed write must remove its temporary"
    for marker in results.rglob("_SUCCESS"):
        folder = marker.parent
        level = (
            "eval"
            if folder.parent.name == "eval"
            else ["data", "model", "train"][len(folder.relative_to(results).parts) - 1]
        )
        for pattern in REQUIRED[level]:
            assert list(folder.glob(pattern)), f"{folder} looks complete without {pattern}"


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_full_while_writing_data(framework: str, disk: Path) -> None:
    results = disk / "results"
    fill(disk, leave=24 * 1024)  # room for the small files, not for data.h5
    code, out = luigi("PrepareData", framework, results)
    check_failed_cleanly(code, out, results, "data.h5")


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_full_while_writing_checkpoints(framework: str, disk: Path) -> None:
    results = disk / "results"
    code, out = luigi("BuildModel", framework, results)
    assert code == 0, out
    fill(disk, leave=64 * 1024)
    code, out = luigi("Train", framework, results)
    check_failed_cleanly(code, out, results, "checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_full_while_writing_the_export(framework: str, disk: Path, tmp_path: Path) -> None:
    results = disk / "results"
    model_config = tmp_path / f"filling_{framework}.yaml"
    model_config.write_text(f"framework: {framework}\nbuilder: {FILLING_MODEL}\n")
    # The export's forward pass fills the disk once the final weights are written, leaving
    # room for run.json and _SUCCESS but not for the export.
    env = {
        "FORGE_PLUGINS": "tests.reliability.disk_fill_plugins",
        "FILL_DISK_MOUNT": str(disk),
        "FILL_DISK_LEAVE": str(16 * 1024),
    }
    code, out = luigi("Train", framework, results, model_config, env)
    assert (disk / "filler").exists(), f"the plugin never filled the disk:\n{out}"
    assert list(results.glob("*/*/*/model/last.*")), out
    check_failed_cleanly(code, out, results, "model/model.")


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_full_while_writing_predictions(framework: str, disk: Path) -> None:
    results = disk / "results"
    code, out = luigi("Train", framework, results)
    assert code == 0, out
    fill(disk, leave=12 * 1024)
    code, out = luigi("Evaluate", framework, results)
    check_failed_cleanly(code, out, results, "eval")

"""Helpers shared by every test folder: the repository, its configs and the real luigi CLI.

Imported as ``tests.support``; fixtures live in the ``conftest.py`` files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

FRAMEWORKS = [
    pytest.param("torch", id="torch"),
    pytest.param(
        "tensorflow",
        id="tensorflow",
        marks=[
            pytest.mark.tensorflow,
            pytest.mark.skipif(
                importlib.util.find_spec("tensorflow") is None, reason="TensorFlow not installed"
            ),
        ],
    ),
]
MODEL_CONFIGS = {
    "torch": CONFIGS / "model" / "mlp_torch.yaml",
    "tensorflow": CONFIGS / "model" / "mlp_tf.yaml",
}


@dataclass
class CliResult:
    """What a finished ``luigi`` command printed and returned."""

    returncode: int
    output: str

    @property
    def ran(self) -> list[str]:
        """Task families Luigi reports as run in this invocation."""
        return [
            line.split(" running ", 1)[1].split("(")[0].strip()
            for line in self.output.splitlines()
            if ") running " in line and "Worker Worker(" in line
        ]


def luigi_command() -> list[str]:
    """The ``luigi`` console script of the Python running the tests."""
    script = Path(sys.executable).with_name("luigi")
    return [str(script)] if script.exists() else [sys.executable, "-m", "luigi"]


def luigi_argv(task: str, args: Sequence[str], results_dir: Path) -> list[str]:
    """The full ``luigi --module pipelines TASK ... --local-scheduler`` command line."""
    return [
        *luigi_command(),
        "--module",
        "pipelines",
        task,
        *args,
        "--results-dir",
        str(results_dir),
        "--local-scheduler",
    ]


def npz_declaring(path: Path, shape: tuple[int, ...], y_rows: int = 8) -> Path:
    """An ``.npz`` whose ``x.npy`` header declares ``shape`` (float64) but holds 8 values."""
    import zipfile

    import numpy as np

    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("x.npy", "w") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            fh.write(np.zeros(8).tobytes())
        with archive.open("y.npy", "w") as fh:
            np.lib.format.write_array(fh, np.zeros(y_rows, np.int64))
    return path


def run_luigi(
    task: str,
    *args: str | os.PathLike[str],
    results_dir: Path,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> CliResult:
    """Run ``luigi --module pipelines TASK ... --local-scheduler`` in a subprocess."""
    command = luigi_argv(task, [str(a) for a in args], results_dir)
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    return CliResult(proc.returncode, proc.stdout + proc.stderr)


def experiment_dirs(results_dir: Path) -> list[Path]:
    """Every experiment (Train) directory under ``results_dir``."""
    return sorted(p.parent for p in results_dir.glob("*/*/*/config.yaml"))


def read_eval_metrics(results_dir: Path) -> list[dict[str, object]]:
    """Every Evaluate metrics.json under ``results_dir``."""
    return [
        json.loads(p.read_text()) for p in sorted(results_dir.glob("*/*/*/eval/*/metrics.json"))
    ]


def write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def args_for(
    data: Path, model: Path, train: Path | None = None, extra: Sequence[str] = ()
) -> list[str]:
    """CLI arguments for the config files given."""
    out = ["--data-config", str(data), "--model-config", str(model)]
    if train is not None:
        out += ["--train-config", str(train)]
    return [*out, *extra]


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from tasks.store.lock import FolderLock
with FolderLock.of(Path(sys.argv[1])).hold():
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_lock_elsewhere(folder: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding ``folder``'s Forge lock for ``seconds`` (returns once held)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def last_line_printed(code: str, cwd: Path) -> str:
    """Run ``code`` in a fresh Python process (failing the test if it fails) and return the
    last line it printed: how tests ask a clean interpreter what got imported."""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]

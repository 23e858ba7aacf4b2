"""Shared helpers of the ``forge`` command tests: real experiments trained once per session.

Not a conftest: tests elsewhere import ``conftest`` by name, so a second one would shadow it.
The experiments are trained through the real ``luigi`` command into a session temp folder
and cached there (a marker file), however many test modules ask for them; tests that
change a results directory work on a copy (:func:`copy_results`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks.cli.app import app
from tasks.store.names import INDEX_DIR
from tasks.store.versions import RACY_NS
from tests.support import CONFIGS, REPO

MOONS = CONFIGS / "data" / "moons.yaml"
MODELS = {
    "torch": CONFIGS / "model" / "mlp_torch.yaml",
    "tensorflow": CONFIGS / "model" / "mlp_tf.yaml",
}
TF_AVAILABLE = importlib.util.find_spec("tensorflow") is not None and MODELS["tensorflow"].exists()
FRAMEWORK_PARAMS = [
    pytest.param("torch", id="torch"),
    pytest.param(
        "tensorflow",
        id="tensorflow",
        marks=[
            pytest.mark.tensorflow,
            pytest.mark.skipif(not TF_AVAILABLE, reason="TensorFlow backend not installed"),
        ],
    ),
]
# (framework, overrides) of the experiments every test can look at.
RUNS = [
    ("torch", "train.epochs=2"),
    ("torch", "train.epochs=2 model.params.hidden=[16]"),
    ("tensorflow", "train.epochs=2"),
]


@dataclass(frozen=True)
class Trained:
    """A results directory with finished experiments, and how each was made."""

    root: Path
    train_config: Path
    runs: list[tuple[str, str]]


def luigi_env() -> dict[str, str]:
    """The environment for subprocesses: the repository first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run_luigi(*args: str | Path, results: Path, env: dict[str, str] | None = None) -> str:
    """Run ``luigi --module pipelines ARGS --local-scheduler``; fail the test on error."""
    script = Path(sys.executable).with_name("luigi")
    command = [
        str(script),
        "--module",
        "pipelines",
        *map(str, args),
        "--results-dir",
        str(results),
        "--local-scheduler",
    ]
    proc = subprocess.run(
        command,
        cwd=REPO,
        env={**luigi_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def forge(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``forge`` console script in a subprocess."""
    script = Path(sys.executable).with_name("forge")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tasks.cli.app"]
    return subprocess.run(
        [*command, *map(str, args)],
        cwd=REPO,
        env={**luigi_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def invoke(*args: str | Path, input: str | None = None) -> tuple[int, str]:
    """Run ``forge ARGS`` in-process through typer's CliRunner: (exit code, stdout+stderr)."""
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Train (once per session) the experiments of :data:`RUNS` whose framework exists."""
    base = tmp_path_factory.getbasetemp() / "forge-cli-trained"
    root = base / "results"
    train_config = base / "tiny_train.yaml"
    runs = [(fw, o) for fw, o in RUNS if fw == "torch" or TF_AVAILABLE]
    marker = base / "done.json"
    if marker.exists():
        return Trained(root, train_config, json.loads(marker.read_text()))
    base.mkdir(parents=True, exist_ok=True)
    train_config.write_text("epochs: 2\nbatch_size: 64\n")
    for framework, overrides in runs:
        run_luigi(
            "Evaluate",
            "--data-config",
            MOONS,
            "--model-config",
            MODELS[framework],
            "--train-config",
            train_config,
            "--overrides",
            overrides,
            results=root,
        )
    # Tasks touch the `forge ls` index only once `forge` created one: no trace before.
    assert not (root / INDEX_DIR).exists()
    marker.write_text(json.dumps(runs))
    # A record read within RACY_NS of its folder's last change is re-read at the next
    # listing (the timestamps may not have moved yet): the tests counting re-reads start
    # once the last experiment's files are older than that.
    time.sleep(RACY_NS / 1e9)
    return Trained(root, train_config, runs)


def copy_results(source: Path, target: Path) -> Path:
    """A private copy of a results directory for a test that changes it."""
    shutil.copytree(source, target, symlinks=True)
    return target


def listing(root: Path) -> list[dict[str, object]]:
    """``forge ls --json`` of ``root``, through the CliRunner."""
    code, output = invoke("ls", root, "--json")
    assert code == 0, output
    return json.loads(output)

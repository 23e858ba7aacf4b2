"""Tiny trained experiments and helpers for the LoadTrained tests (trained once per framework).

Each framework gets a results tree with two experiments, both trained and evaluated through
the real ``luigi`` command: one with the built-in ``mlp`` builder, one with a builder from a
plugin module (``FORGE_PLUGINS``) that tests can edit or make unimportable.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import CONFIGS, MODEL_CONFIGS, REPO, experiment_dirs, run_luigi

PLUGIN_MODULE = "forge_lt_plugin"
PLUGIN_SOURCE = '''"""Test plugin: a tiny builder per framework, registered under "lt_tiny"."""

import math

from tasks import register_model


@register_model("lt_tiny", framework="torch")
def tiny_torch(input_shape, num_classes, width: int = 16):
    import torch.nn as nn

    # builder body marker
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), width),
        nn.ReLU(),
        nn.Linear(width, num_classes),
    )


@register_model("lt_tiny", framework="tensorflow")
def tiny_tf(input_shape, num_classes, width: int = 16):
    import keras

    # builder body marker
    return keras.Sequential(
        [
            keras.Input(shape=tuple(input_shape)),
            keras.layers.Flatten(),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(num_classes),
        ]
    )
'''

# Keep both epochs' checkpoints: the tests load and tamper with epoch 1's.
QUICK = ("--overrides", "train.epochs=2 train.keep_checkpoints=2")


@dataclass
class Trained:
    """A results tree with a built-in-builder and a plugin-builder experiment."""

    framework: str
    root: Path
    results: Path
    configs: Path
    plugin_dir: Path
    builtin: Path
    plugin: Path

    def plugin_env(self) -> dict[str, str]:
        # The repository stays on the path: the subprocess must run this checkout's code.
        return {
            "FORGE_PLUGINS": PLUGIN_MODULE,
            "PYTHONPATH": os.pathsep.join((str(self.plugin_dir), str(REPO))),
        }


def framework_available(framework: str) -> None:
    """Skip when the framework, or its backend and model config, has not landed."""
    module = "tensorflow" if framework == "tensorflow" else "torch"
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    if not MODEL_CONFIGS[framework].is_file():
        pytest.skip(f"{MODEL_CONFIGS[framework].name} does not exist yet")
    backend = REPO / "tasks" / "backends" / f"_{module}.py"
    if not backend.is_file():
        pytest.skip(f"the {framework} backend has not landed")


def make_trained(framework: str, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Both experiments of one framework, configs copied to a temp folder first."""
    framework_available(framework)
    root = tmp_path_factory.mktemp(f"lt-{framework}")
    configs = root / "configs"
    configs.mkdir()
    data = Path(shutil.copy(CONFIGS / "data" / "digits.yaml", configs / "digits.yaml"))
    model = Path(shutil.copy(MODEL_CONFIGS[framework], configs / f"mlp_{framework}.yaml"))
    tiny = configs / f"lt_tiny_{framework}.yaml"
    tiny.write_text(f"framework: {framework}\nbuilder: lt_tiny\nparams: {{width: 16}}\n")
    plugin_dir = root / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE)
    results = root / "results"
    env = {"FORGE_PLUGINS": PLUGIN_MODULE, "PYTHONPATH": str(plugin_dir)}
    for model_config in (model, tiny):
        result = run_luigi(
            "Evaluate", "--data-config", data, "--model-config", model_config, *QUICK,
            results_dir=results, env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.output[-3000:]
    by_builder = {json.loads((d / "run.json").read_text())["code"]["builder"]["name"]: d
                  for d in experiment_dirs(results)}  # fmt: skip
    return Trained(framework, root, results, configs, plugin_dir, by_builder["mlp"],
                   by_builder["lt_tiny"])  # fmt: skip


LOAD_SCRIPT = """
import json, sys, warnings
import numpy as np
warnings.simplefilter("always")
from pipelines import LoadTrained
with warnings.catch_warnings(record=True) as caught:
    exp = LoadTrained(sys.argv[1], code_free=sys.argv[2] == "1")
    x, _ = exp.data("test")
    pred = exp.predict(x)
stored = exp.evaluations[0].predictions()["output"]
print(json.dumps({
    "diff": float(np.abs(np.asarray(pred) - stored).max()),
    "shape": list(np.asarray(pred).shape),
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    "framework_modules": sorted(m for m in ("torch", "tensorflow") if m in sys.modules),
}))
"""


def load_in_subprocess(
    experiment: Path,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    code_free: bool = False,
    check: bool = True,
) -> dict[str, Any]:
    """Load ``experiment`` in a fresh Python from ``cwd``; its predictions vs Evaluate's.

    With ``check=False`` a failed load returns ``{"error": <stderr tail>}`` instead.
    """
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(experiment), "1" if code_free else "0"],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if not check and proc.returncode != 0:
        return {"error": proc.stderr[-3000:]}
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])

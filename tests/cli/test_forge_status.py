"""``forge status``: done / would run, and why: "config changed" vs "model code changed"."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.cli.forge_support import (
    FRAMEWORK_PARAMS,
    MODELS,
    MOONS,
    Trained,
    copy_results,
    forge,
    invoke,
    listing,
    run_luigi,
    trained,
)

pytestmark = pytest.mark.slow  # trains real experiments through the luigi command


@pytest.fixture(scope="module")
def exps(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained(tmp_path_factory)


def _args(exps: Trained, framework: str, overrides: str) -> list[str | Path]:
    return [
        "--data-config",
        MOONS,
        "--model-config",
        MODELS[framework],
        "--train-config",
        exps.train_config,
        "--overrides",
        overrides,
        "--results-dir",
        exps.root,
    ]


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_everything_done(exps: Trained, framework: str) -> None:
    code, output = invoke("status", *_args(exps, framework, "train.epochs=2"))
    assert code == 0, output
    states = [line.split()[:2] for line in output.splitlines()[1:] if line.startswith("  ")]
    assert states == [
        ["PrepareData", "done"],
        ["BuildModel", "done"],
        ["Train", "done"],
        ["Evaluate", "done"],
    ]


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_config_changed_names_the_key(exps: Trained, framework: str) -> None:
    code, output = invoke("status", *_args(exps, framework, "train.epochs=3"))
    assert code == 0, output
    assert "Train        would run" in output
    assert "config changed since tiny_train-" in output and "train.epochs 2 → 3" in output
    assert "model code changed" not in output
    assert "Evaluate     would run" in output and "upstream step would run first" in output


def test_experiment_whose_config_file_was_edited(exps: Trained) -> None:
    record = listing(exps.root)[0]
    original = exps.train_config.read_text()
    try:
        code, output = invoke("status", record["id"][:8], "-r", exps.root)
        assert code == 0 and "config unchanged" in output, output
        exps.train_config.write_text("epochs: 2\nbatch_size: 32\n")
        code, output = invoke("status", record["id"][:8], "-r", exps.root)
        assert code == 0, output
        assert "config changed" in output and "train.batch_size 64 → 32" in output
        assert "model code changed" not in output
    finally:
        exps.train_config.write_text(original)


_PLUGIN = '''
    """A user plugin: a tiny torch builder registered through FORGE_PLUGINS."""
    from tasks import register_model


    @register_model("tiny_net", framework="torch")
    def tiny_net(input_shape, num_classes, width: int = 8):
        import math

        import torch.nn as nn

        return nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
            nn.Linear(width, num_classes),
        )
'''


def test_model_code_changed_after_editing_the_plugin(exps: Trained, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    module = plugins / "forge_cli_tiny_plugin.py"
    module.write_text(textwrap.dedent(_PLUGIN))
    model = tmp_path / "tiny_net.yaml"
    model.write_text("framework: torch\nbuilder: tiny_net\nparams: {width: 8}\n")
    env = {"FORGE_PLUGINS": "forge_cli_tiny_plugin", "PYTHONPATH": str(plugins)}
    root = copy_results(exps.root, tmp_path / "results")
    args = [
        "--data-config",
        MOONS,
        "--model-config",
        model,
        "--train-config",
        exps.train_config,
        "--overrides",
        "train.epochs=1",
    ]
    run_luigi("Train", *args, results=root, env=env)
    proc = forge("status", *args, "--results-dir", root, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Train        done" in proc.stdout and "code changed" not in proc.stdout

    module.write_text(module.read_text().replace("nn.ReLU()", "nn.Tanh()"))
    proc = forge("status", *args, "--results-dir", root, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Train        stale" in proc.stdout
    assert "model code changed" in proc.stdout and "tiny_net" in proc.stdout
    assert "config changed" not in proc.stdout

    ls = forge("ls", root, "--json", env=env)
    records = {r["model"]: r for r in json.loads(ls.stdout)}
    assert records["tiny_net"]["status"] == "stale"
    assert records["tiny_net"]["stale_reasons"] == ["model code changed (builder tiny_net)"]
    assert {r["status"] for m, r in records.items() if m != "tiny_net"} <= {"done", "stale"}
    exp = next(r for r in records.values() if r["model"] == "tiny_net")
    proc = forge("status", exp["id"][:8], "-r", root, env=env)
    assert "model code changed" in proc.stdout and "config unchanged" in proc.stdout


def test_status_needs_configs_or_an_experiment() -> None:
    code, output = invoke("status", "--data-config", MOONS)
    assert code == 1 and "--model-config" in output

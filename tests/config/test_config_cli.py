"""Override typing, ``base:`` and interpolation through the real ``luigi`` command.

Every step resolves its own configs from the parameters Luigi hands it, so these runs
check that PrepareData, BuildModel and Train agree on one set of directories.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import CONFIGS, experiment_dirs, run_luigi, write_yaml

pytestmark = pytest.mark.slow

MLP = CONFIGS / "model" / "mlp_torch.yaml"


def _step_dirs(results: Path) -> dict[str, list[Path]]:
    return {
        "data": sorted(p.parent for p in results.glob("*/data.h5")),
        "model": sorted(p.parent for p in results.glob("*/*/_SUCCESS")),
        "train": experiment_dirs(results),
    }


def test_tiny_float_overrides_give_one_set_of_directories(tmp_path: Path) -> None:
    data = write_yaml(tmp_path / "d.yaml", "loader: moons\nparams: {n_samples: 120}\n")
    results = tmp_path / "results"
    overrides = (
        "train.epochs=1 train.optimizer.lr=1e-5 model.params.dropout=1e-5 data.params.noise=1e-1"
    )
    args = ["--data-config", str(data), "--model-config", str(MLP), "--overrides", overrides]
    first = run_luigi("Train", *args, results_dir=results)
    assert first.returncode == 0, first.output
    dirs = _step_dirs(results)
    assert [len(v) for v in dirs.values()] == [1, 1, 1], dirs
    (experiment,) = dirs["train"]
    assert experiment.parent == dirs["model"][0] and experiment.parent.parent == dirs["data"][0]
    stored = yaml.safe_load((experiment / "config.yaml").read_text())
    assert stored["train"]["optimizer"]["lr"] == pytest.approx(1e-5)
    assert stored["model"]["params"]["dropout"] == pytest.approx(1e-5)
    assert stored["data"]["params"]["noise"] == pytest.approx(0.1)
    # The same values spelt differently are the same experiment: nothing runs again.
    again = run_luigi(
        "Train",
        *args[:-1],
        "data.params.noise=0.1 model.params.dropout=0.00001 "
        "train.optimizer.lr=1.0e-05 train.epochs=1",
        results_dir=results,
    )
    assert again.returncode == 0, again.output
    assert again.ran == [], again.output
    assert _step_dirs(results) == dirs


def test_child_config_and_flat_equivalent_are_one_experiment(tmp_path: Path) -> None:
    write_yaml(
        tmp_path / "common" / "data.yaml",
        "name: moons120\nloader: moons\nparams: {n_samples: 120, noise: 0.2}\n",
    )
    child_data = write_yaml(
        tmp_path / "child" / "data.yaml",
        "base: ../common/data.yaml\nsplit: {seed: '${data.params.n_samples}'}\n",
    )
    write_yaml(tmp_path / "common" / "train.yaml", "name: quick\nepochs: 1\nbatch_size: 32\n")
    child_train = write_yaml(
        tmp_path / "child" / "train.yaml",
        "base: ../common/train.yaml\nseed: ${model.seed}\n"
        "optimizer: {lr: 0.01, weight_decay: '${train.optimizer.lr}'}\n",
    )
    flat_data = write_yaml(
        tmp_path / "flat" / "data.yaml",
        "name: moons120\nloader: moons\nparams: {n_samples: 120, noise: 0.2}\nsplit: {seed: 120}\n",
    )
    flat_train = write_yaml(
        tmp_path / "flat" / "train.yaml",
        "name: quick\nepochs: 1\nbatch_size: 32\nseed: 3\n"
        "optimizer: {lr: 0.01, weight_decay: 0.01}\n",
    )
    results = tmp_path / "results"
    common = ["--model-config", str(MLP), "--overrides", "model.seed=3"]
    first = run_luigi(
        "Train",
        "--data-config",
        str(child_data),
        "--train-config",
        str(child_train),
        *common,
        results_dir=results,
    )
    assert first.returncode == 0, first.output
    (experiment,) = experiment_dirs(results)
    stored = yaml.safe_load((experiment / "config.yaml").read_text())
    assert stored["train"]["seed"] == 3 and stored["data"]["split"]["seed"] == 120
    assert stored["train"]["optimizer"]["weight_decay"] == 0.01
    assert "base" not in stored["data"] and "base" not in stored["train"]
    flat = run_luigi(
        "Train",
        "--data-config",
        str(flat_data),
        "--train-config",
        str(flat_train),
        *common,
        results_dir=results,
    )
    assert flat.returncode == 0, flat.output
    assert flat.ran == [], flat.output
    assert experiment_dirs(results) == [experiment]

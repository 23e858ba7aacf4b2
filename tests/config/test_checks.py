"""Configs that validate one by one but cannot run together fail when a task resolves them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.base import resolve_spec
from tasks.config.checks import check_split_rows
from tasks.errors import ConfigError
from tests.support import CONFIGS, write_yaml

LEVELS = ("data", "model", "train", "eval")
MLP = str(CONFIGS / "model" / "mlp_torch.yaml")


def _spec(tmp_path: Path, data: str, train: str = "", evaluation: str = "", overrides: str = ""):
    paths = {
        "data": str(write_yaml(tmp_path / "data.yaml", data)),
        "model": MLP,
        "train": str(write_yaml(tmp_path / "train.yaml", train)) if train else None,
        "eval": str(write_yaml(tmp_path / "eval.yaml", evaluation)) if evaluation else None,
    }
    return resolve_spec(LEVELS, paths, overrides, tmp_path / "results")


MOONS = "loader: moons\nparams: {n_samples: 200}\n"


@pytest.mark.parametrize(
    ("data", "train", "evaluation", "overrides", "match"),
    [
        pytest.param(
            MOONS + "split: {test: 0}\n",
            "",
            "",
            "",
            "key 'split' is 'test'.*split.test",
            id="test-0",
        ),
        pytest.param(
            MOONS + "split: {val: 0}\n",
            "",
            "split: train\n",
            "",
            "'val_loss'.*split.val",
            id="val-0",
        ),
        pytest.param(
            MOONS, "monitor: val_acc\n", "", "", "never logs.*val_accuracy", id="unknown-monitor"
        ),
        pytest.param(
            MOONS, "loss: mse\nmonitor: accuracy\n", "", "", "never logs", id="no-accuracy-for-mse"
        ),
        pytest.param(MOONS, "", "", "train.seed=4294967296", "key 'seed'", id="seed-too-big"),
        pytest.param(MOONS, "", "", "model.seed=-1", "key 'seed'", id="seed-negative"),
        pytest.param(
            MOONS,
            "",
            "",
            "data.params.seed=4294967296",
            "'params.seed'.*0..4294967295",
            id="loader",
        ),
        pytest.param(
            "loader: moons\nparams: {n_samples: 4}\nsplit: {val: 0.1, test: 0.2}\n",
            "",
            "",
            "",
            "rounds to no validation rows",
            id="too-few-rows",
        ),
        pytest.param(
            "loader: moons\nparams: {n_samples: 2}\n", "", "", "", "only 2 rows", id="two-rows"
        ),
        pytest.param(MOONS, "epochs: 2\n", "checkpoint: 3\n", "", "trains 2 epochs", id="ckpt"),
        pytest.param(
            "loader: moons\nparams: {n_samples: 1.5}\n",
            "",
            "",
            "",
            r"data\.yaml: key 'params\.n_samples' is 1\.5; it must be a whole number",
            id="rows-float",
        ),
        pytest.param(
            "loader: moons\nparams: {n_samples: 200, noise: -1}\n",
            "",
            "",
            "",
            r"data\.yaml: key 'params\.noise' is -1; it must be a number >= 0",
            id="noise-negative",
        ),
        pytest.param(
            "loader: moons\nparams: {n_samples: 200, noise: abc}\n",
            "",
            "",
            "",
            r"key 'params\.noise' is 'abc'",
            id="noise-text",
        ),
        pytest.param(
            "loader: moons\nparams: {n_samples: 200, noise: .nan}\n",
            "",
            "",
            "",
            r"key 'params\.noise' is nan",
            id="noise-nan",
        ),
        pytest.param(
            "loader: moons\nparams: {n_samples: 200, seed: 1.5}\n",
            "",
            "",
            "",
            r"key 'params\.seed' is 1\.5; it must be a whole number",
            id="seed-float",
        ),
    ],
)
def test_unrunnable_combinations_fail_at_resolution(
    tmp_path: Path, data: str, train: str, evaluation: str, overrides: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        _spec(tmp_path, data, train, evaluation, overrides)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("data", "train", "evaluation"),
    [
        pytest.param(MOONS + "split: {val: 0}\n", "monitor: loss\n", "", id="val-0-monitor-loss"),
        pytest.param(MOONS + "split: {test: 0}\n", "", "split: val\n", id="test-0-eval-val"),
        pytest.param(MOONS, "monitor: val_accuracy\nmode: max\n", "", id="val-accuracy"),
    ],
)
def test_runnable_combinations_pass(tmp_path: Path, data: str, train: str, evaluation: str) -> None:
    spec = _spec(tmp_path, data, train, evaluation)
    assert set(spec.dirs) == set(LEVELS)


def test_split_rows_at_prepare_time() -> None:
    assert check_split_rows(10, {"val": 0.1, "test": 0.2}, "d") == {"train": 7, "val": 1, "test": 2}
    assert check_split_rows(10, {"val": 0.0, "test": 0.0}, "d")["train"] == 10
    with pytest.raises(ConfigError, match="d: key 'split.test'.*rounds to no test rows"):
        check_split_rows(4, {"val": 0.3, "test": 0.1}, "d")

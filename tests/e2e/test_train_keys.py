"""Every train config key of the shared loop, end to end through the real ``luigi`` command,
in both frameworks: scheduler (+ warm-up, lr column), early stopping, grad_clip, accumulate,
precision, deterministic, keep_checkpoints, and registered optimizers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.support import CONFIGS, FRAMEWORKS, MODEL_CONFIGS, experiment_dirs, run_luigi, write_yaml

pytestmark = pytest.mark.slow

MOONS = CONFIGS / "data" / "moons.yaml"


def _train(framework: str, tmp_path: Path, text: str, task: str = "Train", *extra: str) -> tuple:
    results = tmp_path / "results"
    config = write_yaml(tmp_path / "train.yaml", text)
    result = run_luigi(
        task, "--data-config", MOONS, "--model-config", MODEL_CONFIGS[framework],
        "--train-config", config, *extra, results_dir=results,
    )  # fmt: skip
    return result, results, config


def _rows(exp: Path) -> list[dict[str, str]]:
    with (exp / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _kept(exp: Path) -> list[str]:
    return sorted(p.name for p in (exp / "checkpoints").glob("epoch-*.json"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_schedule_clip_accumulate_bf16_deterministic_and_retention(
    framework: str, tmp_path: Path
) -> None:
    result, results, _ = _train(
        framework,
        tmp_path,
        "epochs: 3\nbatch_size: 32\noptimizer: {name: sgd, lr: 0.2, momentum: 0.9}\n"
        "scheduler: {name: step, step_size: 1, gamma: 0.5, warmup_epochs: 1}\n"
        "grad_clip: 0.5\naccumulate: 2\nprecision: bf16\ndeterministic: true\n"
        "keep_checkpoints: 2\n",
    )
    assert result.returncode == 0, result.output[-3000:]
    (exp,) = experiment_dirs(results)
    rows = _rows(exp)
    # warm-up epoch at half the rate, then step's lr, lr * 0.5
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.1, 0.2, 0.1], rel=1e-6)
    assert float(rows[-1]["val_accuracy"]) > 0.75  # it really trained
    assert _kept(exp) == ["epoch-0002.json", "epoch-0003.json"]
    run = json.loads((exp / "run.json").read_text())
    assert (run["end_reason"], run["end_epoch"], run["status"]) == ("completed", 3, "done")
    stored = (exp / "config.yaml").read_text()
    for text in ("grad_clip: 0.5", "accumulate: 2", "precision: bf16", "deterministic: true"):
        assert text in stored


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_early_stopping_ends_a_complete_experiment(framework: str, tmp_path: Path) -> None:
    text = (
        "epochs: 4\nbatch_size: 64\noptimizer: {name: adam, lr: 0.01}\n"
        "scheduler: {name: onecycle, max_lr: 0.02}\nprecision: 16-mixed\n"
        # no epoch improves val_loss by 100 on the first one: stop after epoch 2
        "early_stopping: {patience: 1, min_delta: 100}\n"
    )
    result, results, _ = _train(framework, tmp_path, text)
    assert result.returncode == 0, result.output[-3000:]
    (exp,) = experiment_dirs(results)
    assert (exp / "_SUCCESS").is_file()
    run = json.loads((exp / "run.json").read_text())
    assert (run["end_reason"], run["end_epoch"]) == ("early_stopping", 2)
    assert [r["epoch"] for r in _rows(exp)] == ["1", "2"]
    assert _kept(exp) == ["epoch-0002.json"]
    assert (exp / "model" / "best.json").is_file()
    again, _, _ = _train(framework, tmp_path, text)
    assert again.returncode == 0 and "Train" not in again.ran


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_unknown_optimizer_lists_the_registered_ones(framework: str, tmp_path: Path) -> None:
    result, results, config = _train(framework, tmp_path, "optimizer: {name: adamx}\n")
    assert result.returncode != 0
    assert "optimizer 'adamx' is not registered" in result.output
    assert "Registered: adam, adamw, rmsprop, sgd" in result.output
    assert str(config) in result.output and "Traceback" not in result.output
    assert not results.exists()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_evaluating_a_pruned_epoch_names_the_kept_ones(framework: str, tmp_path: Path) -> None:
    eval_config = write_yaml(tmp_path / "eval.yaml", "checkpoint: 1\n")
    result, results, _ = _train(
        framework, tmp_path, "epochs: 3\n", "Evaluate", "--eval-config", str(eval_config)
    )
    assert result.returncode != 0
    assert "keeps only the checkpoints of epochs 3" in result.output, result.output[-2000:]
    assert "raise train.keep_checkpoints" in result.output
    assert not results.exists()


def test_unknown_scheduler_and_scheduler_keys_are_errors(tmp_path: Path) -> None:
    result, _, _ = _train("torch", tmp_path, "scheduler: {name: cosinus}\n")
    assert result.returncode != 0 and "did you mean 'cosine'" in result.output
    result, _, _ = _train("torch", tmp_path, "scheduler: {name: step, gama: 0.5}\n")
    assert result.returncode != 0 and "did you mean 'gamma'" in result.output

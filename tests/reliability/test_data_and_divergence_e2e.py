"""Through the real ``luigi`` command: any numeric dtype trains, NaN losses fail for good,
and a config copied under another name reuses the experiment that has its content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.support import (
    CONFIGS,
    FRAMEWORKS,
    MODEL_CONFIGS,
    args_for,
    experiment_dirs,
    run_luigi,
    write_yaml,
)

pytestmark = pytest.mark.slow  # trains real experiments through the luigi command


def _npz_config(folder: Path, x: np.ndarray, y: np.ndarray) -> Path:
    np.savez(folder / "data.npz", x=x, y=y)
    return write_yaml(folder / "data.yaml", "loader: npz\nparams: {path: data.npz}\n")


def _moons(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=0.1, random_state=0)
    return x, y  # float64 x, int64 y: numpy's defaults


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(
    ("x_dtype", "y_dtype"),
    [
        pytest.param("float64", "int8", id="f64-int8"),
        pytest.param("float16", "bool", id="f16-bool"),
    ],
)
def test_plain_numpy_dtypes_train_and_evaluate(
    framework: str, x_dtype: str, y_dtype: str, tmp_path: Path
) -> None:
    x, y = _moons()
    data = _npz_config(tmp_path, x.astype(x_dtype), y.astype(y_dtype))
    results = tmp_path / "results"
    out = run_luigi(
        "Evaluate",
        *args_for(data, MODEL_CONFIGS[framework], extra=["--overrides", "train.epochs=1"]),
        results_dir=results,
    )
    assert out.returncode == 0, out.output
    (meta_file,) = results.glob("*/meta.json")
    meta = json.loads(meta_file.read_text())
    assert meta["dtypes"] == {
        "x": {"source": x_dtype, "stored": "float32"},
        "y": {"source": y_dtype, "stored": "int64"},
    }
    assert meta["task"] == "classification" and meta["num_classes"] == 2
    (metrics,) = results.glob("*/*/*/eval/*/metrics.json")
    assert 0.0 <= json.loads(metrics.read_text())["metrics"]["accuracy"] <= 1.0


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_diverged_training_fails_in_one_line_and_leaves_nothing_behind(
    framework: str, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    args = args_for(
        CONFIGS / "data" / "moons.yaml",
        MODEL_CONFIGS[framework],
        extra=["--overrides", "train.optimizer.lr=.inf train.epochs=2"],
    )
    for _attempt in (1, 2):
        out = run_luigi("Train", *args, results_dir=results)
        assert out.returncode != 0, out.output
        assert out.output.count("TrainingDivergedError:") == 1, out.output
        assert "training diverged at epoch 1: metric 'loss'" in out.output, out.output
        assert "Traceback" not in out.output, out.output
        # Nothing to resume from (the NaN epoch was never committed), so the failed step
        # leaves no folder; its finished upstream steps stay.
        left = [p for p in results.glob("*/*/*") if p.is_dir()]
        assert left == [], left
        assert len(list(results.glob("*/*/_SUCCESS"))) == 1
        assert len(list(results.glob("*/_SUCCESS"))) == 1


def test_config_copied_under_another_name_reuses_the_experiment(tmp_path: Path) -> None:
    results = tmp_path / "results"
    copy = tmp_path / "copy.yaml"
    shutil.copyfile(CONFIGS / "train" / "default.yaml", copy)
    base = [CONFIGS / "data" / "moons.yaml", MODEL_CONFIGS["torch"]]
    extra = ["--overrides", "train.epochs=1"]
    first = run_luigi(
        "Train", *args_for(*base, CONFIGS / "train" / "default.yaml", extra), results_dir=results
    )
    assert first.returncode == 0, first.output
    assert "Train" in first.ran, first.output
    again = run_luigi("Train", *args_for(*base, copy, extra), results_dir=results)
    assert again.returncode == 0, again.output
    assert again.ran == [], again.output
    (exp,) = experiment_dirs(results)
    assert exp.name.startswith("default-"), exp
    # The control: a copy whose content differs is a new experiment under its own name.
    copy.write_text(copy.read_text().replace("seed: 0", "seed: 1"))
    other = run_luigi("Train", *args_for(*base, copy, extra), results_dir=results)
    assert other.returncode == 0 and "Train" in other.ran, other.output
    assert sorted(p.name.split("-")[0] for p in experiment_dirs(results)) == ["copy", "default"]

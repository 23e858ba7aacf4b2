"""Bring your own objective, through the real ``luigi`` command: a VAE on unlabelled digits,
a two-input model, registry checks and code drift of an objective."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.registry import load_plugins
from tests.support import FRAMEWORKS, REPO, experiment_dirs, run_luigi, write_yaml

pytestmark = pytest.mark.slow

VAE = REPO / "examples" / "vae" / "configs"
VAE_MODELS = {
    "torch": VAE / "model" / "vae_torch.yaml",
    "tensorflow": VAE / "model" / "vae_tf.yaml",
}
VAE_ENV = {"FORGE_PLUGINS": "examples.vae.plugins"}
HERE = Path(__file__).resolve().parent
TWO_INPUT_ENV = {"FORGE_PLUGINS": "objective_plugins", "PYTHONPATH": str(HERE)}


def _vae_args(framework: str, epochs: int) -> list[str]:
    return [
        "--data-config", str(VAE / "data" / "digits_unlabelled.yaml"),
        "--model-config", str(VAE_MODELS[framework]),
        "--train-config", str(VAE / "train" / "vae.yaml"),
        "--overrides", f"train.epochs={epochs}",
    ]  # fmt: skip


def _csv_rows(path: Path) -> list[dict[str, float]]:
    with path.open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


@pytest.fixture
def vae_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The VAE plugin registered in this process too (for LoadTrained)."""
    monkeypatch.syspath_prepend(str(REPO))
    load_plugins(extra=["examples.vae.plugins"])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_vae_trains_evaluates_and_loads(
    framework: str, results_dir: Path, vae_plugins: None
) -> None:
    eval_config = ["--eval-config", str(VAE / "eval" / "vae.yaml")]
    result = run_luigi(
        "Evaluate", *_vae_args(framework, 6), *eval_config, results_dir=results_dir, env=VAE_ENV
    )
    assert result.returncode == 0, result.output[-3000:]
    (experiment,) = experiment_dirs(results_dir)

    rows = _csv_rows(experiment / "metrics.csv")
    assert len(rows) == 6
    for name in ("loss", "elbo", "recon", "kl", "val_loss", "val_elbo", "val_recon", "val_kl"):
        assert name in rows[0], sorted(rows[0])
    assert rows[-1]["elbo"] > rows[0]["elbo"] + 3.0, [r["elbo"] for r in rows]
    assert rows[-1]["val_elbo"] > rows[0]["val_elbo"], [r["val_elbo"] for r in rows]
    assert all(r["loss"] == pytest.approx(-r["elbo"]) for r in rows)
    best = json.loads((experiment / "model" / "best.json").read_text())
    assert best["monitor"] == "val_elbo" and best["mode"] == "max"
    assert best["value"] == pytest.approx(max(r["val_elbo"] for r in rows))

    (record_path,) = experiment.glob("eval/*/metrics.json")
    record = json.loads(record_path.read_text())
    metrics = record["metrics"]
    assert set(metrics) == {"loss", "elbo", "recon", "kl", "recon_error"}
    assert metrics["loss"] == pytest.approx(-metrics["elbo"])
    assert 0.0 < metrics["recon_error"] < 0.2
    assert record["code"]["objective"]["name"] == "vae_elbo"
    assert record["code"]["objective"]["fingerprint"]
    assert record["code"]["metrics"]["recon_error"]["fingerprint"]

    from pipelines import LoadTrained

    exp = LoadTrained(experiment)
    x, y = exp.data("test")
    assert y is None
    out = exp.predict(x[:50], batch_size=16)
    assert isinstance(out, dict)
    assert set(out) == {"recon", "logits", "mean", "logvar"}
    assert all(isinstance(v, np.ndarray) for v in out.values())
    assert out["recon"].shape == x[:50].shape and out["mean"].shape == (50, 4)
    # Inference is deterministic (the latent mean, no sampling).
    np.testing.assert_allclose(exp.predict(x[:50])["mean"], out["mean"], atol=1e-5)
    # Decoding the codes reconstructs the digits better than a constant image would.
    assert np.mean((out["recon"] - x[:50]) ** 2) < np.mean((x[:50] - x.mean()) ** 2)
    # The code-free export keeps the dict outputs.
    assert json.loads((experiment / "run.json").read_text())["export"]["ok"] is True
    free = LoadTrained(experiment, code_free=True).predict(x[:50])
    assert isinstance(free, dict) and set(free) == set(out)
    np.testing.assert_allclose(free["recon"], out["recon"], atol=1e-4)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_two_input_model_trains_from_three_named_arrays(
    framework: str, results_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_yaml(tmp_path / "features.yaml", "loader: digits_with_feature\n")
    model = write_yaml(
        tmp_path / "two_input.yaml",
        f"framework: {framework}\nbuilder: two_input\ninputs: [image, feature]\n",
    )
    args = ["--data-config", data, "--model-config", model, "--overrides", "train.epochs=4"]
    result = run_luigi("Evaluate", *args, results_dir=results_dir, env=TWO_INPUT_ENV)
    assert result.returncode == 0, result.output[-3000:]
    (experiment,) = experiment_dirs(results_dir)
    rows = _csv_rows(experiment / "metrics.csv")
    assert rows[-1]["loss"] < rows[0]["loss"]
    (record_path,) = experiment.glob("eval/*/metrics.json")
    assert json.loads(record_path.read_text())["metrics"]["accuracy"] > 0.5

    import h5py

    with h5py.File(next(experiment.glob("eval/*/predictions.h5")), "r") as fh:
        outputs = sorted(fh["outputs"])
        assert sorted(fh["targets"]) == ["feature", "image", "y"]
    assert outputs == (["output_0", "output_1"] if framework == "torch" else ["output"])

    monkeypatch.syspath_prepend(str(HERE))
    load_plugins(extra=["objective_plugins"])
    from pipelines import LoadTrained

    exp = LoadTrained(experiment)
    arrays = {"image": np.zeros((5, 8, 8, 1)), "feature": np.zeros((5, 1))}
    out = exp.predict(arrays)
    if framework == "torch":
        assert isinstance(out, tuple) and len(out) == 2
        np.testing.assert_allclose(out[1].sum(axis=1), 1.0, atol=1e-5)
    first = out[0] if isinstance(out, tuple) else out
    assert isinstance(first, np.ndarray) and first.shape == (5, 10)
    with pytest.raises(Exception, match="pass a dict of arrays named as them"):
        exp.predict(arrays["image"])


def test_unknown_names_and_missing_arrays_fail_before_any_work(
    results_dir: Path, tmp_path: Path
) -> None:
    unlabelled = str(VAE / "data" / "digits_unlabelled.yaml")
    bad_objective = write_yaml(
        tmp_path / "bad_objective.yaml", "framework: torch\nbuilder: vae\nobjective: elbo_vae\n"
    )
    result = run_luigi(
        "Evaluate", "--data-config", unlabelled, "--model-config", bad_objective,
        results_dir=results_dir, env=VAE_ENV,
    )  # fmt: skip
    assert result.returncode != 0
    assert "objective 'elbo_vae' is not registered" in result.output
    assert "Registered: vae_elbo" in result.output
    assert not results_dir.exists()

    bad_metric = write_yaml(tmp_path / "bad_metric.yaml", "metrics: [loss, recon_err]\n")
    result = run_luigi(
        "Evaluate", *_vae_args("torch", 1), "--eval-config", bad_metric,
        results_dir=results_dir, env=VAE_ENV,
    )  # fmt: skip
    assert result.returncode != 0
    assert "metric 'recon_err' is not registered" in result.output
    assert "accuracy, loss, mae, mse, recon_error" in result.output
    assert not results_dir.exists()

    # Unlabelled data and no objective: Train refuses before its directory exists.
    plain = write_yaml(tmp_path / "plain_vae.yaml", "framework: torch\nbuilder: vae\n")
    result = run_luigi(
        "Train", "--data-config", unlabelled, "--model-config", plain,
        results_dir=results_dir, env=VAE_ENV,
    )  # fmt: skip
    assert result.returncode != 0
    assert "key 'objective' is not set" in result.output
    assert "registered for torch: vae_elbo" in result.output
    assert experiment_dirs(results_dir) == []
    assert not list(results_dir.glob("*/*/*/"))

    # A model input the data does not have: BuildModel refuses, naming the arrays there are.
    missing = write_yaml(
        tmp_path / "missing_input.yaml",
        "framework: torch\nbuilder: two_input\ninputs: [image, weight]\n",
    )
    features = write_yaml(tmp_path / "features.yaml", "loader: digits_with_feature\n")
    result = run_luigi(
        "BuildModel", "--data-config", features, "--model-config", missing,
        results_dir=results_dir, env=TWO_INPUT_ENV,
    )  # fmt: skip
    assert result.returncode != 0
    assert "key 'inputs[1]' names array 'weight'" in result.output
    assert "available arrays: feature, image, y" in result.output
    assert not list(results_dir.glob("digits_with_feature-*/missing_input-*"))


def test_changed_objective_marks_experiment_stale_without_deleting_it(
    results_dir: Path, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    module = plugins / "drift_vae.py"
    shutil.copy(REPO / "examples" / "vae" / "plugins.py", module)
    env = {"FORGE_PLUGINS": "drift_vae", "PYTHONPATH": str(plugins)}
    args = _vae_args("torch", 2)
    assert run_luigi("Train", *args, results_dir=results_dir, env=env).returncode == 0
    (experiment,) = experiment_dirs(results_dir)

    forge = [str(Path(sys.executable).with_name("forge")), "status", *args[:6]]
    forge += ["--overrides", args[7], "--results-dir", str(results_dir)]
    full_env = {**os.environ, **env}
    before = subprocess.run(forge, env=full_env, capture_output=True, text=True, cwd=REPO)
    assert before.returncode == 0, before.stdout + before.stderr
    assert "stale" not in before.stdout

    source = module.read_text()
    edited = source.replace("kl = -0.5 * (1 + logvar", "kl = -0.25 * (1 + logvar")
    assert edited != source
    module.write_text(edited)

    after = subprocess.run(forge, env=full_env, capture_output=True, text=True, cwd=REPO)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "stale" in after.stdout and "objective 'vae_elbo'" in after.stdout, after.stdout

    probe = (
        "import warnings\n"
        "from pipelines import LoadTrained\n"
        "from tasks import CodeDriftWarning\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    LoadTrained({str(experiment)!r}).model\n"
        "print([str(w.message) for w in caught if w.category is CodeDriftWarning])\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], env={**full_env, "PYTHONPATH": f"{plugins}:{REPO}"},
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "objective drift_vae.vae_elbo_torch" in loaded.stdout, loaded.stdout
    # Nothing was deleted or retrained: Luigi still counts the experiment as done.
    assert (experiment / "_SUCCESS").is_file()
    rerun = run_luigi("Train", *args, results_dir=results_dir, env=env)
    assert rerun.returncode == 0 and rerun.ran == []
    assert experiment_dirs(results_dir) == [experiment]


def test_a_model_that_cannot_be_exported_trains_and_says_so(
    results_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_yaml(tmp_path / "fixed.yaml", "framework: torch\nbuilder: fixed_batch\n")
    args = ["--data-config", REPO / "configs" / "data" / "digits.yaml", "--model-config", model]
    result = run_luigi(
        "Train", *args, "--overrides", "train.epochs=1", results_dir=results_dir,
        env=TWO_INPUT_ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    (experiment,) = experiment_dirs(results_dir)
    export = json.loads((experiment / "run.json").read_text())["export"]
    assert export["ok"] is False and export["error"]
    assert "code-free export failed" in (experiment / "train.log").read_text()

    monkeypatch.syspath_prepend(str(HERE))
    load_plugins(extra=["objective_plugins"])
    from pipelines import LoadTrained
    from tasks.errors import ExperimentNotFoundError

    out = LoadTrained(experiment).predict(np.zeros((3, 64)))
    assert isinstance(out, dict) and out["logits"].shape == (3, 10)
    with pytest.raises(ExperimentNotFoundError, match="has no code-free export"):
        LoadTrained(experiment, code_free=True).predict(np.zeros((3, 64)))

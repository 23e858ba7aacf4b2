"""LoadTrained restores experiments from their directory alone, safely, for both frameworks."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import luigi
import numpy as np
import pytest

from pipelines import LoadTrained
from tasks import ConfigError, CorruptArtifactError, ExperimentNotFoundError
from tasks.experiment import Experiment
from tests.load_trained.lt_support import (
    PLUGIN_MODULE,
    Trained,
    framework_available,
    load_in_subprocess,
    make_trained,
)
from tests.support import CONFIGS, FRAMEWORKS, MODEL_CONFIGS, REPO, last_line_printed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=FRAMEWORKS)
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Two tiny experiments per framework, trained once for this module."""
    return make_trained(request.param, tmp_path_factory)


def stored_predictions(experiment: Path) -> np.ndarray:
    return LoadTrained(experiment).evaluations[0].predictions()["output"]


def copy_results(t: Trained, dest: Path) -> Path:
    """A copy of the whole results tree; returns the built-in experiment inside it."""
    shutil.copytree(t.results, dest)
    return dest / t.builtin.relative_to(t.results)


# -- restoring ---------------------------------------------------------------------------


def test_predictions_equal_what_evaluate_stored(trained: Trained) -> None:
    exp = LoadTrained(trained.builtin)
    x, y = exp.data("test")
    assert exp.framework == trained.framework
    assert exp.config["model"]["builder"] == "mlp"
    np.testing.assert_allclose(exp.predict(x), stored_predictions(trained.builtin), atol=1e-6)
    if trained.framework == "torch":
        import torch

        assert isinstance(exp.model, torch.nn.Module) and not exp.model.training
        with torch.no_grad():
            direct = exp.model(torch.from_numpy(x)).numpy()
    else:
        import keras

        assert isinstance(exp.model, keras.Model)
        direct = np.asarray(exp.model(x, training=False))
    np.testing.assert_allclose(direct, stored_predictions(trained.builtin), atol=1e-6)
    assert y is not None and len(y) == len(x) == exp.evaluations[0].rows


def test_accessors_read_the_stored_experiment(trained: Trained) -> None:
    exp = LoadTrained(trained.builtin)
    assert [row["epoch"] for row in exp.metrics] == [1, 2]
    assert {"loss", "val_loss"} <= set(exp.metrics[0])
    (evaluation,) = exp.evaluations
    assert evaluation.split == "test" and 0.0 <= evaluation.metrics["accuracy"] <= 1.0
    last, first = exp.checkpoint("last"), exp.checkpoint(1)
    x, _ = exp.data("val")
    assert last.predict(x).shape == first.predict(x).shape == (len(x), 10)
    assert not np.allclose(first.predict(x), last.predict(x))
    with pytest.raises(ExperimentNotFoundError, match="stored epochs"):
        exp.checkpoint(99).model  # noqa: B018
    with pytest.raises(ConfigError, match="checkpoint"):
        exp.checkpoint("newest")
    assert exp.predict(x, batch_size=7).shape == (len(x), 10)


def test_survives_deleted_configs_other_cwd_and_moved_results(
    trained: Trained, tmp_path: Path
) -> None:
    moved = copy_results(trained, tmp_path / "elsewhere" / "results")
    configs = tmp_path / "configs"
    shutil.copytree(trained.configs, configs)
    shutil.rmtree(configs)  # the copies the experiment never pointed at are gone too
    (tmp_path / "cwd").mkdir()
    out = load_in_subprocess(moved, cwd=tmp_path / "cwd")
    assert out["diff"] <= 1e-6 and not out["warnings"]
    out = load_in_subprocess(
        trained.builtin.relative_to(trained.results), cwd=trained.results
    )  # a relative path, from the results folder
    assert out["diff"] <= 1e-6


def test_deleted_original_config_files_do_not_matter(trained: Trained, tmp_path: Path) -> None:
    backup = tmp_path / "configs-backup"
    shutil.copytree(trained.configs, backup)
    shutil.rmtree(trained.configs)
    try:
        out = load_in_subprocess(trained.builtin, cwd=tmp_path)
    finally:
        shutil.copytree(backup, trained.configs)
    assert out["diff"] <= 1e-6


def test_code_free_matches_the_full_model(trained: Trained) -> None:
    exp = LoadTrained(trained.builtin, code_free=True)
    x, _ = exp.data("test")
    np.testing.assert_allclose(exp.predict(x), stored_predictions(trained.builtin), atol=1e-5)
    with pytest.raises(Exception, match="holds the 'best' weights"):
        LoadTrained(trained.builtin, checkpoint="last", code_free=True).model  # noqa: B018


def test_unimportable_builder_asks_for_code_free(trained: Trained, tmp_path: Path) -> None:
    moved = tmp_path / "results"
    shutil.copytree(trained.results, moved)
    experiment = moved / trained.plugin.relative_to(trained.results)
    with_plugin = load_in_subprocess(experiment, cwd=tmp_path, env=trained.plugin_env())
    assert with_plugin["diff"] <= 1e-6 and not with_plugin["warnings"]
    renamed = tmp_path / "renamed"
    shutil.copytree(trained.plugin_dir, renamed)
    (renamed / f"{PLUGIN_MODULE}.py").rename(renamed / "forge_lt_plugin_v2.py")
    env = {**trained.plugin_env(), "PYTHONPATH": os.pathsep.join((str(renamed), str(REPO)))}
    # No silent switch to the export: one error saying how to ask for it.
    code = f"from pipelines import LoadTrained; LoadTrained({str(experiment)!r}).model"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "ExperimentError" in proc.stderr and "code_free=True" in proc.stderr, proc.stderr
    assert PLUGIN_MODULE in proc.stderr
    out = load_in_subprocess(experiment, cwd=tmp_path, env=env, code_free=True)
    assert out["diff"] <= 1e-5 and not out["warnings"], out


def test_edited_builder_source_warns_about_code_drift(trained: Trained, tmp_path: Path) -> None:
    edited = tmp_path / "edited"
    shutil.copytree(trained.plugin_dir, edited)
    source = edited / f"{PLUGIN_MODULE}.py"
    source.write_text(source.read_text().replace("# builder body marker", "# edited since"))
    env = {**trained.plugin_env(), "PYTHONPATH": os.pathsep.join((str(edited), str(REPO)))}
    out = load_in_subprocess(trained.plugin, cwd=tmp_path, env=env)
    assert out["diff"] <= 1e-6  # same architecture: the weights still load
    drift = [w for w in out["warnings"] if w.startswith("CodeDriftWarning")]
    assert drift and "builder" in drift[0] and "tiny_" in drift[0], out["warnings"]


def test_constructing_and_reading_records_imports_no_framework(
    trained: Trained, tmp_path: Path
) -> None:
    code = (
        "import sys\nfrom pipelines import LoadTrained\n"
        f"e = LoadTrained({str(trained.builtin)!r})\n"
        "e.config, e.metrics, e.evaluations, e.data('test'), e.checkpoint('last')\n"
        "print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))"
    )
    assert last_line_printed(code, tmp_path) == "[]"


# -- finding experiments -------------------------------------------------------------------


def test_prefix_and_not_found_errors(trained: Trained) -> None:
    exp = LoadTrained(str(trained.builtin)[:-3])
    assert exp.directory == trained.builtin.resolve()
    wrong = trained.builtin.with_name("default-00000000")
    with pytest.raises(ExperimentNotFoundError, match="closest experiments") as err:
        LoadTrained(wrong)
    assert str(trained.builtin.resolve()) in str(err.value)
    with pytest.raises(ExperimentNotFoundError, match="matches 2 experiments"):
        LoadTrained(trained.builtin.parent.parent)
    with pytest.raises(ExperimentNotFoundError, match="no finished experiment"):
        LoadTrained.from_configs(
            trained.configs / "digits.yaml",
            trained.configs / f"mlp_{trained.framework}.yaml",
            overrides={"train.epochs": 7},
            results_dir=trained.results,
        )


def test_from_configs_finds_the_trained_experiment(trained: Trained) -> None:
    exp = LoadTrained.from_configs(
        data_config=trained.configs / "digits.yaml",
        model_config=trained.configs / f"mlp_{trained.framework}.yaml",
        overrides="train.epochs=2 train.keep_checkpoints=2",
        results_dir=trained.results,
    )
    assert exp.directory == trained.builtin.resolve()
    x, _ = exp.data("test")
    np.testing.assert_allclose(exp.predict(x), stored_predictions(trained.builtin), atol=1e-6)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_from_configs_builds_only_when_asked(framework: str, tmp_path: Path) -> None:
    framework_available(framework)
    configs = {
        "data_config": CONFIGS / "data" / "digits.yaml",
        "model_config": MODEL_CONFIGS[framework],
        "overrides": "train.epochs=1 model.params.hidden=[16]",
        "results_dir": tmp_path / "results",
    }
    with pytest.raises(ExperimentNotFoundError, match="build=True"):
        LoadTrained.from_configs(**configs)
    assert not (tmp_path / "results").exists()  # looking never trains nor writes
    exp = LoadTrained.from_configs(**configs, build=True)
    assert exp.complete and (exp.directory / "model").is_dir()
    assert not isinstance(exp, luigi.Task)  # a plain experiment object
    x, _ = exp.data("test")
    assert exp.predict(x).shape == (len(x), 10)
    assert [row["epoch"] for row in exp.metrics] == [1]
    attempts = (exp.directory / "runs.jsonl").read_text().splitlines()
    again = LoadTrained.from_configs(**configs, build=True)  # reused, not trained again
    assert again.directory == exp.directory
    assert (exp.directory / "runs.jsonl").read_text().splitlines() == attempts


# -- safety ------------------------------------------------------------------------------


class _Payload:
    """Unpickling this writes ``sentinel``: what a hostile weights file would do."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({self.sentinel!r}, 'w').write('pwned')",))


def hostile_pickle(sentinel: Path) -> bytes:
    return pickle.dumps(_Payload(sentinel))


def test_the_hostile_pickle_really_runs_code(tmp_path: Path) -> None:
    control = tmp_path / "control"
    pickle.loads(hostile_pickle(control))  # noqa: S301 - proves the payload is live
    assert control.read_text() == "pwned"


@pytest.mark.parametrize("which", ["best", "last", 1])
def test_pickled_weights_or_checkpoint_is_refused(
    trained: Trained, tmp_path: Path, which: str | int
) -> None:
    experiment = copy_results(trained, tmp_path / "results")
    target = Experiment(experiment).weights_path(which)
    sentinel = tmp_path / "sentinel"
    target.write_bytes(hostile_pickle(sentinel))
    with pytest.raises(CorruptArtifactError, match=target.name):
        LoadTrained(experiment, checkpoint=which).model  # noqa: B018
    assert not sentinel.exists()


def test_truncated_weights_name_the_file(trained: Trained, tmp_path: Path) -> None:
    experiment = copy_results(trained, tmp_path / "results")
    target = Experiment(experiment).weights_path("best")
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(CorruptArtifactError, match=target.name):
        LoadTrained(experiment).model  # noqa: B018


def test_export_path_outside_the_experiment_is_refused(trained: Trained, tmp_path: Path) -> None:
    experiment = copy_results(trained, tmp_path / "results")
    run = json.loads((experiment / "run.json").read_text())
    run["export"]["file"] = "../../../../outside.pt2"
    (experiment / "run.json").write_text(json.dumps(run))
    with pytest.raises(CorruptArtifactError, match="outside"):
        LoadTrained(experiment, code_free=True).model  # noqa: B018

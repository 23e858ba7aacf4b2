"""The core pipeline end to end, through the real ``luigi`` command, for both frameworks."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from tests.support import (
    CONFIGS,
    FRAMEWORKS,
    MODEL_CONFIGS,
    REPO,
    experiment_dirs,
    luigi_command,
    read_eval_metrics,
    run_luigi,
    write_yaml,
)

pytestmark = pytest.mark.slow

DIGITS = CONFIGS / "data" / "digits.yaml"
MOONS = CONFIGS / "data" / "moons.yaml"
QUICK = "train.epochs=2"


def _snapshot(directory: Path) -> dict[str, int]:
    return {
        str(p.relative_to(directory)): p.stat().st_mtime_ns
        for p in directory.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    """Evaluate on digits with the default train and eval configs, once per framework."""
    runs = {}
    for framework, model in MODEL_CONFIGS.items():
        if not model.exists():
            continue
        results = tmp_path_factory.mktemp(f"digits-{framework}") / "results"
        result = run_luigi(
            "Evaluate", "--data-config", DIGITS, "--model-config", model, results_dir=results
        )
        runs[framework] = (results, result)
    return runs


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_default_configs_reach_95_percent_on_digits(digits_runs, framework: str) -> None:
    results, result = digits_runs[framework]
    assert result.returncode == 0, result.output
    (metrics,) = read_eval_metrics(results)
    assert metrics["split"] == "test"
    assert metrics["metrics"]["accuracy"] >= 0.95


@pytest.mark.tensorflow
def test_torch_and_tensorflow_agree_within_three_points(digits_runs) -> None:
    accuracy = {
        fw: read_eval_metrics(results)[0]["metrics"]["accuracy"]
        for fw, (results, _) in digits_runs.items()
    }
    assert set(accuracy) == {"torch", "tensorflow"}
    assert abs(accuracy["torch"] - accuracy["tensorflow"]) <= 0.03


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_experiment_directory_holds_documented_files(digits_runs, framework: str) -> None:
    results, _ = digits_runs[framework]
    (exp,) = experiment_dirs(results)
    for name in ("config.yaml", "params.json", "run.json", "metrics.csv", "train.log", "_SUCCESS"):
        assert (exp / name).is_file(), name
    assert (exp / "tensorboard").is_dir() and any((exp / "checkpoints").iterdir())
    run = json.loads((exp / "run.json").read_text())
    assert run["status"] == "done" and run["framework"] == framework
    assert {"luigi", "h5py"} <= set(run["versions"])
    assert run["seed"] == 0 and run["device"] == "cpu"
    assert run["optimizer_kernel"] == ("fused" if framework == "torch" else None)
    rows = (exp / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:2] == ["epoch", "loss"] and "val_accuracy" in rows[0]
    assert len(rows) == 1 + 20
    params = json.loads((exp / "params.json").read_text())
    assert params["data_config"] == str(DIGITS)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_tensorboard_and_h5py_read_the_outputs(digits_runs, framework: str) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results, _ = digits_runs[framework]
    (exp,) = experiment_dirs(results)
    events = EventAccumulator(str(exp / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= tags
    assert [e.step for e in events.Scalars("val_loss")] == list(range(1, 21))

    with h5py.File(exp.parent.parent / "data.h5", "r") as fh:
        sizes = {split: fh[split]["x"].shape[0] for split in ("train", "val", "test")}
        assert sum(sizes.values()) == 1797
        assert fh["train"]["x"].shape[1:] == (64,) and fh["train"]["y"].dtype.kind == "i"
        assert fh["train"]["x"].chunks is not None
        assert fh.attrs["num_classes"] == 10 and len(fh.attrs["config_digest"]) == 64


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_rerun_is_a_no_op(digits_runs, framework: str) -> None:
    results, _ = digits_runs[framework]
    before = _snapshot(results)
    again = run_luigi(
        "Evaluate",
        "--data-config",
        DIGITS,
        "--model-config",
        MODEL_CONFIGS[framework],
        results_dir=results,
    )
    assert again.returncode == 0, again.output
    assert again.ran == []
    assert "complete" in again.output or "already done" in again.output
    assert _snapshot(results) == before


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_caching_follows_config_content(tmp_path: Path, framework: str) -> None:
    results = tmp_path / "results"
    model = MODEL_CONFIGS[framework]
    train = write_yaml(tmp_path / "train.yaml", "epochs: 2\nbatch_size: 64\n")
    base = ["--data-config", MOONS, "--model-config", model, "--train-config", train]

    first = run_luigi("Evaluate", *base, results_dir=results)
    assert first.returncode == 0, first.output
    assert sorted(first.ran) == ["BuildModel", "Evaluate", "PrepareData", "Train"]
    (old_exp,) = experiment_dirs(results)

    # Comments, key order and explicitly written defaults change nothing.
    write_yaml(
        train, "# same values\nbatch_size: 64   # rows\nseed: 0\nepochs: 2\nloss: cross_entropy\n"
    )
    same = run_luigi("Evaluate", *base, results_dir=results)
    assert same.returncode == 0 and same.ran == [], same.output

    # Changing only the eval config reruns Evaluate only.
    eval_cfg = write_yaml(tmp_path / "eval.yaml", "split: val\n")
    eval_only = run_luigi("Evaluate", *base, "--eval-config", eval_cfg, results_dir=results)
    assert eval_only.returncode == 0 and eval_only.ran == ["Evaluate"], eval_only.output
    old_files = _snapshot(old_exp)

    # Editing the train config's values reruns Train and Evaluate; the old experiment stays.
    write_yaml(train, "epochs: 3\nbatch_size: 64\n")
    edited = run_luigi("Evaluate", *base, results_dir=results)
    assert edited.returncode == 0, edited.output
    assert sorted(edited.ran) == ["Evaluate", "Train"]
    assert len(experiment_dirs(results)) == 2
    assert _snapshot(old_exp) == old_files


def test_two_model_configs_share_prepared_data(tmp_path: Path) -> None:
    results = tmp_path / "results"
    linear = CONFIGS / "model" / "linear_torch.yaml"
    runs = [
        run_luigi(
            "Train",
            "--data-config",
            MOONS,
            "--model-config",
            m,
            "--overrides",
            QUICK,
            results_dir=results,
        )
        for m in (MODEL_CONFIGS["torch"], linear)
    ]
    assert all(r.returncode == 0 for r in runs), [r.output for r in runs]
    assert runs[0].ran.count("PrepareData") == 1 and "PrepareData" not in runs[1].ran
    assert len(list(results.glob("*/data.h5"))) == 1
    assert len(experiment_dirs(results)) == 2


EPOCHS_TO_KILL = 60


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_killed_train_resumes_from_last_checkpoint(tmp_path: Path, framework: str) -> None:
    results = tmp_path / "results"
    args = [
        "--data-config",
        DIGITS,
        "--model-config",
        MODEL_CONFIGS[framework],
        "--overrides",
        # A checkpoint every epoch, so one of an early epoch is there to be killed after
        # while training still has many epochs to go (however fast they are).
        f"train.epochs={EPOCHS_TO_KILL} train.checkpoint_min_interval_s=0",
    ]
    command = [
        *luigi_command(),
        "--module",
        "pipelines",
        "Train",
        *map(str, args),
        "--results-dir",
        str(results),
        "--local-scheduler",
    ]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            # Older checkpoints are pruned (keep_checkpoints), so wait for epoch 3's.
            sidecars = results.glob("*/*/*/checkpoints/epoch-*.json")
            if max((int(p.stem.split("-")[1]) for p in sidecars), default=0) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail("Train finished before it could be interrupted")
            time.sleep(0.05)
        import os

        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    (exp,) = experiment_dirs(results)
    assert not (exp / "_SUCCESS").exists()
    committed = sorted(int(p.stem.split("-")[1]) for p in exp.glob("checkpoints/epoch-*.json"))
    assert committed and committed[-1] < EPOCHS_TO_KILL

    resumed = run_luigi("Train", *args, results_dir=results)
    assert resumed.returncode == 0, resumed.output
    run = json.loads((exp / "run.json").read_text())
    assert run["resumed_from_epoch"] >= committed[-1]
    epochs = [
        int(line.split(",")[0]) for line in (exp / "metrics.csv").read_text().splitlines()[1:]
    ]
    assert epochs == list(range(1, EPOCHS_TO_KILL + 1))
    assert "resuming from checkpoint" in (exp / "train.log").read_text()


def test_failing_task_exits_non_zero(tmp_path: Path) -> None:
    results = tmp_path / "results"
    cnn_on_flat_data = CONFIGS / "model" / "cnn_torch.yaml"
    result = run_luigi(
        "Train", "--data-config", MOONS, "--model-config", cnn_on_flat_data, results_dir=results
    )
    assert result.returncode != 0
    assert "needs image-shaped inputs" in result.output
    assert not list(results.glob("*/*/_SUCCESS"))


@pytest.mark.parametrize(
    ("config_text", "expected"),
    [
        pytest.param("epochs: -1\n", "key 'epochs'", id="negative-epochs"),
        pytest.param("epoch: 3\n", "did you mean 'epochs'", id="unknown-key"),
        pytest.param("epochs: [1\n", "line 2, column 1", id="yaml-syntax"),
        pytest.param("optimizer: {name: adamm}\n", "key 'optimizer.name'", id="bad-optimizer"),
    ],
)
def test_bad_train_config_fails_before_any_directory(
    tmp_path: Path, config_text: str, expected: str
) -> None:
    results = tmp_path / "results"
    bad = write_yaml(tmp_path / "bad.yaml", config_text)
    result = run_luigi(
        "Train",
        "--data-config",
        MOONS,
        "--model-config",
        MODEL_CONFIGS["torch"],
        "--train-config",
        bad,
        results_dir=results,
    )
    assert result.returncode != 0
    assert expected in result.output and str(bad) in result.output
    assert "Traceback" not in result.output
    assert not results.exists()


def test_unknown_override_key_is_an_error(tmp_path: Path) -> None:
    results = tmp_path / "results"
    result = run_luigi(
        "Train",
        "--data-config",
        MOONS,
        "--model-config",
        MODEL_CONFIGS["torch"],
        "--overrides",
        "model.params.hiden=[8]",
        results_dir=results,
    )
    assert result.returncode != 0
    assert "did you mean 'hidden'" in result.output
    assert not results.exists()


def test_import_pipelines_imports_no_framework() -> None:
    code = (
        "import sys, pipelines\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_torch_run_never_imports_tensorflow(tmp_path: Path) -> None:
    code = (
        "import sys, luigi, pipelines\n"
        f"ok = luigi.build([pipelines.Evaluate(data_config={str(MOONS)!r}, "
        f"model_config={str(MODEL_CONFIGS['torch'])!r}, overrides={QUICK!r}, "
        f"results_dir={str(tmp_path / 'results')!r})], local_scheduler=True)\n"
        "assert ok\n"
        "assert 'torch' in sys.modules\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_python_api_builds_the_same_experiment(tmp_path: Path) -> None:
    """``luigi.build`` from Python and the CLI produce one shared experiment."""
    import luigi

    import pipelines

    results = tmp_path / "results"
    task = pipelines.Train(
        data_config=str(MOONS),
        model_config=str(MODEL_CONFIGS["torch"]),
        overrides=QUICK,
        results_dir=str(results),
    )
    assert luigi.build([task], local_scheduler=True)
    assert task.complete()
    cli = run_luigi(
        "Train",
        "--data-config",
        MOONS,
        "--model-config",
        MODEL_CONFIGS["torch"],
        "--overrides",
        QUICK,
        results_dir=results,
    )
    assert cli.returncode == 0 and cli.ran == []
    shutil.rmtree(results)
    assert not task.complete()


def test_run_record_keeps_the_git_state_of_a_dirty_work_tree(tmp_path: Path) -> None:
    """run.json names the commit and the dirty flag; the uncommitted diff is saved beside it."""
    project = tmp_path / "project"
    project.mkdir()
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    notes = project / "notes.txt"
    notes.write_text("first\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "start"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    notes.write_text("first\nan uncommitted idea\n")

    results = tmp_path / "results"
    result = run_luigi(
        "Train",
        "--data-config",
        MOONS,
        "--model-config",
        MODEL_CONFIGS["torch"],
        "--overrides",
        "train.epochs=1",
        results_dir=results,
        cwd=project,
        env={"LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")},
    )
    assert result.returncode == 0, result.output
    (exp,) = experiment_dirs(results)
    run = json.loads((exp / "run.json").read_text())
    assert run["git"]["commit"] == head and run["git"]["dirty"] is True
    assert "+an uncommitted idea" in (exp / run["git"]["diff_file"]).read_text()

"""Resume equivalence: a Train killed after checkpoint k and rerun ends where an
uninterrupted run ends.

torch (CPU, one process, same versions): the final and best weights are bit-identical and
metrics.csv is identical row for row — model, optimizer, torch RNG and the data order
(a function of seed and epoch) are all restored from the checkpoint.

TensorFlow: the same epochs and metrics rows, weights equal within a small tolerance (see
docs/guarantees.md for why Keras gives no bit-for-bit promise).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.crashkit import (
    checkpoint_committed,
    committed_epochs,
    experiment_dir,
    load_weights_file,
    metric_epochs,
    pausing,
    run_luigi_to_end,
    start_luigi,
    tensorflow_available,
    train_args,
    wait_until,
)

EPOCHS = 6
KILL_AFTER = 2
OVERRIDES = f"train.epochs={EPOCHS} train.batch_size=8"


def _weights(exp: Path, stem: str) -> dict[str, np.ndarray]:
    files = [p for p in (exp / "model").glob(f"{stem}.*") if p.suffix != ".json"]
    assert len(files) == 1, files
    return load_weights_file(files[0])


# A scheduled (per-step one-cycle and warm-up), clipped, accumulated run whose
# plateau-free schedule state and early-stopping counters live in the sidecars.
SCHEDULED = (
    "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
    "scheduler: {name: onecycle, max_lr: 0.1, warmup_epochs: 1}\n"
    "early_stopping: {patience: 100}\n"
    "grad_clip: 0.5\naccumulate: 3\nkeep_checkpoints: 2\n"
)


def _interrupted_and_resumed(
    framework: str, tmp_path: Path, train_config: str | None = None
) -> tuple[Path, Path, int]:
    """Run Train once straight through and once killed after checkpoint k and rerun.

    Both runs train the pausing plugin model (the MLP, see ``pause_plugins``); the killed
    run holds at the first batch after epoch k until it is killed.
    """
    pause = pausing(
        framework, train_args(framework, OVERRIDES), tmp_path, after_epoch=KILL_AFTER, batch_size=8
    )
    args, plain = pause.args, pause.plain_env
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    code, out = run_luigi_to_end("BuildModel", args, straight, tmp_path / "build.log", env=plain)
    if train_config is not None:
        config = tmp_path / "train.yaml"
        config.write_text(train_config)
        args = [*args, "--train-config", str(config)]
    assert code == 0, out
    shutil.copytree(straight, resumed)  # same data.h5 and initial weights for both

    code, out = run_luigi_to_end("Train", args, straight, tmp_path / "straight.log", env=plain)
    assert code == 0, out

    running = start_luigi("Train", args, resumed, tmp_path / "killed.log", env=pause.env)
    assert wait_until(pause.reached, running.proc), running.output()
    assert wait_until(checkpoint_committed(resumed, KILL_AFTER), running.proc), running.output()
    running.kill()
    exp = experiment_dir(resumed)
    assert exp is not None and not (exp / "_SUCCESS").exists()
    k = committed_epochs(exp)[-1]
    assert k == KILL_AFTER, f"the kill landed at checkpoint {k}"

    code, out = run_luigi_to_end("Train", args, resumed, tmp_path / "rerun.log", env=plain)
    assert code == 0, out
    straight_exp = experiment_dir(straight)
    assert straight_exp is not None
    assert json.loads((exp / "run.json").read_text())["resumed_from_epoch"] == k
    assert "resuming from checkpoint" in (exp / "train.log").read_text()
    return straight_exp, exp, k


@pytest.mark.slow
def test_torch_resume_is_bit_identical(tmp_path: Path) -> None:
    """torch: interrupted + resumed == uninterrupted, exactly (weights and metrics)."""
    straight, resumed, _ = _interrupted_and_resumed("torch", tmp_path)
    for stem in ("last", "best"):
        a, b = _weights(straight, stem), _weights(resumed, stem)
        assert a.keys() == b.keys()
        for name in a:
            assert a[name].dtype == b[name].dtype
            assert np.array_equal(a[name], b[name]), f"{stem}:{name} differs after resume"
    assert (straight / "metrics.csv").read_text() == (resumed / "metrics.csv").read_text()
    assert (straight / "model" / "best.json").read_text() == (
        resumed / "model" / "best.json"
    ).read_text()


@pytest.mark.slow
def test_torch_scheduled_clipped_accumulated_resume_is_bit_identical(tmp_path: Path) -> None:
    """torch: scheduler, early-stopping, clipping and accumulation state survive a kill."""
    straight, resumed, _ = _interrupted_and_resumed("torch", tmp_path, SCHEDULED)
    a, b = _weights(straight, "last"), _weights(resumed, "last")
    for name in a:
        assert np.array_equal(a[name], b[name]), f"last:{name} differs after resume"
    assert (straight / "metrics.csv").read_text() == (resumed / "metrics.csv").read_text()
    lrs = [line.split(",")[-1] for line in (resumed / "metrics.csv").read_text().splitlines()]
    assert lrs[0] == "lr" and len(set(lrs[1:])) == EPOCHS  # the schedule really moved
    for exp in (straight, resumed):
        assert json.loads((exp / "run.json").read_text())["end_reason"] == "completed"


@pytest.mark.slow
@pytest.mark.tensorflow
@pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow backend not available")
def test_tensorflow_resume_matches_within_tolerance(tmp_path: Path) -> None:
    """TensorFlow: same epochs and rows; weights and metrics equal within 1e-4 — with the
    schedule, early-stopping, clipping and accumulation state crossing the kill too."""
    straight, resumed, _ = _interrupted_and_resumed("tensorflow", tmp_path, SCHEDULED)
    assert metric_epochs(straight) == metric_epochs(resumed) == list(range(1, EPOCHS + 1))
    lrs = [line.split(",")[-1] for line in (resumed / "metrics.csv").read_text().splitlines()]
    assert lrs[0] == "lr" and len(set(lrs[1:])) == EPOCHS  # the schedule really moved
    a, b = _weights(straight, "last"), _weights(resumed, "last")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=name)
    rows_a = (straight / "metrics.csv").read_text().splitlines()
    rows_b = (resumed / "metrics.csv").read_text().splitlines()
    assert rows_a[0] == rows_b[0]
    for line_a, line_b in zip(rows_a[1:], rows_b[1:], strict=True):
        values_a = np.array([float(v) for v in line_a.split(",")])
        values_b = np.array([float(v) for v in line_b.split(",")])
        np.testing.assert_allclose(values_a, values_b, rtol=1e-4, atol=1e-5)
    exact = all(np.array_equal(a[n], b[n]) for n in a)
    print(f"\ntensorflow resume bit-identical in this run: {exact}")

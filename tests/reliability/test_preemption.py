"""Preemption through the real ``luigi`` command: SIGUSR1 (Slurm) or SIGTERM (preemptible
machines) makes a running Train write a checkpoint and exit non-zero within seconds, and
rerunning the same command resumes from that checkpoint without repeating an epoch.

The signal is honoured after the current batch (optimizer step), not at the epoch's end:
an epoch far longer than the exit bound is the control, and a run stopped inside an epoch
and rerun ends with the weights of one that never stopped (torch on CPU: bit for bit).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.store.summary import read_record
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

pytestmark = pytest.mark.slow

EPOCHS = 30
ARGS = train_args("torch", f"train.epochs={EPOCHS} train.batch_size=16")


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM], ids=["SIGUSR1", "SIGTERM"])
def test_signal_checkpoints_exits_non_zero_and_rerun_resumes(
    tmp_path: Path, sig: signal.Signals
) -> None:
    results = tmp_path / "results"
    # Held at the first batch of epoch 3 until the signal is sent: it lands mid-training.
    pause = pausing("torch", ARGS, tmp_path, after_epoch=2, batch_size=16, release=True)
    running = start_luigi("Train", pause.args, results, tmp_path / "first.log", env=pause.env)
    assert wait_until(pause.reached, running.proc), running.output()
    assert wait_until(checkpoint_committed(results, 2), running.proc), running.output()
    os.kill(running.proc.pid, sig)
    sent = time.monotonic()
    pause.release()
    code = running.wait(timeout=60)
    took = time.monotonic() - sent
    out = running.output()
    assert code != 0, out
    assert took < 15, f"exit took {took:.1f} s after {sig.name}"
    assert out.count("PreemptedError:") == 1 and sig.name in out, out
    assert "Traceback" not in out
    exp = experiment_dir(results)
    assert exp is not None and not (exp / "_SUCCESS").exists()
    stopped_at = metric_epochs(exp)
    assert stopped_at == [1, 2], "the signal must stop training inside epoch 3"
    assert committed_epochs(exp)[-1] == 2
    run = json.loads((exp / "run.json").read_text())
    assert run["status"] == "failed" and run["end_reason"] == "preempted", run

    code, out = run_luigi_to_end(
        "Train", pause.args, results, tmp_path / "second.log", env=pause.plain_env
    )
    assert code == 0, out
    assert metric_epochs(exp) == list(range(1, EPOCHS + 1)), "an epoch was repeated or lost"
    # The signal came during epoch 3's first batch: that batch was finished and saved.
    log = (exp / "train.log").read_text()
    assert "resuming from checkpoint partial-0003" in log, log


# The exit bound, measured from the signal; a control epoch lasts far longer than this.
EXIT_BOUND_S = 30.0


def _data_config(tmp_path: Path, samples: int) -> Path:
    """Moons with ``samples`` rows, nearly all of them for training."""
    path = tmp_path / f"moons{samples}.yaml"
    path.write_text(
        f"loader: moons\nparams: {{n_samples: {samples}, noise: 0.1, seed: 0}}\n"
        "split: {val: 0.01, test: 0.01, seed: 0}\n"
    )
    return path


def _training_started(results: Path) -> Any:
    """A ``wait_until`` condition: the event file TensorBoard's callback opens right
    before the first batch exists."""

    def condition() -> bool:
        exp = experiment_dir(results)
        return exp is not None and any((exp / "tensorboard").glob("events.out.tfevents*"))

    return condition


def _partial(exp: Path) -> dict[str, Any]:
    """The loop's ``partial`` state in the (only) partial checkpoint's sidecar."""
    sidecars = sorted((exp / "checkpoints").glob("partial-*.json"))
    assert len(sidecars) == 1, sorted(p.name for p in (exp / "checkpoints").iterdir())
    record = json.loads(sidecars[0].read_text())
    assert (exp / "checkpoints" / record["file"]).is_file(), record
    partial: dict[str, Any] = record["loop"]["partial"]
    assert sidecars[0].name == f"partial-{partial['epoch']:04d}.json"
    assert record["epoch"] == partial["epoch"] - 1  # what the file holds: finished epochs
    return partial


def _preempt_mid_epoch(
    args: list[str], results: Path, log: Path, sig: signal.Signals, after_s: float
) -> tuple[Path, dict[str, Any], float, float]:
    """Start Train, signal it ``after_s`` seconds into training, wait for its exit.

    Returns:
        The experiment, its partial state, the seconds from the signal to the exit, and
        the seconds it trained before the signal (an upper bound).
    """
    running = start_luigi("Train", args, results, log)
    assert wait_until(_training_started(results), running.proc), running.output()
    started = time.monotonic()
    time.sleep(after_s)
    os.kill(running.proc.pid, sig)
    sent = time.monotonic()
    code = running.wait(timeout=2 * EXIT_BOUND_S)  # an epoch-end stop: killed
    took = time.monotonic() - sent
    out = running.output()
    assert code != 0, out
    assert out.count("PreemptedError:") == 1 and sig.name in out, out
    assert "Traceback" not in out
    exp = experiment_dir(results)
    assert exp is not None and not (exp / "_SUCCESS").exists()
    partial = _partial(exp)
    assert 0 < partial["batches"] < partial["of"], f"the signal did not land mid-epoch: {partial}"
    assert f"after batch {partial['batches']}/{partial['of']} of epoch" in out
    run = json.loads((exp / "run.json").read_text())
    assert run["status"] == "failed" and run["end_reason"] == "preempted", run
    return exp, partial, took, sent - started


def test_a_signal_stops_mid_epoch_within_seconds_of_a_long_epoch(tmp_path: Path) -> None:
    # One epoch of ~200,000 single-row batches takes minutes: a check at epoch ends only
    # would exit long after EXIT_BOUND_S (the control, measured below).
    data = _data_config(tmp_path, 200_000)
    args = train_args("torch", "train.epochs=2 train.batch_size=1", data)
    exp, partial, took, trained = _preempt_mid_epoch(
        args, tmp_path / "results", tmp_path / "run.log", signal.SIGUSR1, after_s=3.0
    )
    assert took < EXIT_BOUND_S, f"exit took {took:.1f} s after SIGUSR1"
    # The control: at the pace it trained, the epoch would have lasted at least this long.
    epoch_s = partial["of"] * max(trained - 0.5, 0.1) / partial["batches"]
    assert epoch_s > 2 * EXIT_BOUND_S, f"the epoch is too short for a control ({epoch_s:.0f} s)"
    assert partial["epoch"] == 1 and metric_epochs(exp) == [] and committed_epochs(exp) == []
    print(f"\nexit {took:.2f} s after the signal; the epoch would last >= {epoch_s:.0f} s")


def _straight_and_stopped(
    framework: str, tmp_path: Path, overrides: str, samples: int, sig: signal.Signals
) -> tuple[Path, Path, dict[str, Any]]:
    """One run straight through and one stopped by ``sig`` mid-epoch, then rerun."""
    args = train_args(framework, overrides, _data_config(tmp_path, samples))
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    code, out = run_luigi_to_end("BuildModel", args, straight, tmp_path / "build.log")
    assert code == 0, out
    shutil.copytree(straight, stopped)  # the same data.h5 and initial weights for both
    code, out = run_luigi_to_end("Train", args, straight, tmp_path / "straight.log")
    assert code == 0, out

    exp, partial, took, _ = _preempt_mid_epoch(
        args, stopped, tmp_path / "stopped.log", sig, after_s=1.0
    )
    assert took < EXIT_BOUND_S, f"exit took {took:.1f} s after {sig.name}"
    print(f"\n{framework}: exit {took:.2f} s after {sig.name}, batch {partial['batches']}/"
          f"{partial['of']} of epoch {partial['epoch']}")  # fmt: skip
    code, out = run_luigi_to_end("Train", args, stopped, tmp_path / "rerun.log")
    assert code == 0, out
    log = (exp / "train.log").read_text()
    assert f"resuming from checkpoint partial-{partial['epoch']:04d}" in log, log
    assert f"inside epoch {partial['epoch']} after batch {partial['batches']}" in log, log
    run = json.loads((exp / "run.json").read_text())
    assert run["status"] == "done" and run["resumed_after_batch"] == partial["batches"], run
    assert not list((exp / "checkpoints").glob("partial-*")), "a finished epoch supersedes it"
    straight_exp = experiment_dir(straight)
    assert straight_exp is not None
    return straight_exp, exp, partial


def _weights(exp: Path, stem: str) -> dict[str, np.ndarray]:
    files = [p for p in (exp / "model").glob(f"{stem}.*") if p.suffix != ".json"]
    assert len(files) == 1, files
    return load_weights_file(files[0])


def _metric_rows(exp: Path) -> tuple[list[str], np.ndarray]:
    lines = (exp / "metrics.csv").read_text().splitlines()
    return lines[0].split(","), np.array(
        [[float(v) for v in line.split(",")] for line in lines[1:]]
    )


def test_torch_resumed_mid_epoch_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    # ~2,000 optimizer steps of two batches each per epoch: the signal lands in epoch 1.
    straight, stopped, partial = _straight_and_stopped(
        "torch", tmp_path, "train.epochs=2 train.batch_size=1 train.accumulate=2",
        samples=4_000, sig=signal.SIGUSR1,
    )  # fmt: skip
    assert partial["batches"] % 2 == 0, "stopped inside an accumulation group"
    for stem in ("last", "best"):
        a, b = _weights(straight, stem), _weights(stopped, stem)
        assert a.keys() == b.keys()
        for name in a:
            assert np.array_equal(a[name], b[name]), f"{stem}:{name} differs after resume"
    # The resumed epoch's row: its means add two partial sums (the last bits may differ).
    (head_a, rows_a), (head_b, rows_b) = _metric_rows(straight), _metric_rows(stopped)
    assert head_a == head_b and rows_a[:, 0].tolist() == rows_b[:, 0].tolist() == [1, 2]
    np.testing.assert_allclose(rows_b, rows_a, rtol=1e-12, atol=0)
    assert (straight / "model" / "best.json").read_text() == (
        stopped / "model" / "best.json"
    ).read_text()


@pytest.mark.tensorflow
@pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow backend not available")
def test_tensorflow_sigterm_mid_epoch_checkpoints_and_resumes(tmp_path: Path) -> None:
    straight, stopped, _ = _straight_and_stopped(
        "tensorflow", tmp_path, "train.epochs=2 train.batch_size=1",
        samples=2_500, sig=signal.SIGTERM,
    )  # fmt: skip
    (head_a, rows_a), (head_b, rows_b) = _metric_rows(straight), _metric_rows(stopped)
    assert head_a == head_b and rows_b[:, 0].tolist() == [1, 2]
    np.testing.assert_allclose(rows_b, rows_a, rtol=1e-4, atol=1e-5)
    a, b = _weights(straight, "last"), _weights(stopped, "last")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=name)
    exact = all(np.array_equal(a[n], b[n]) for n in a)
    same_rows = np.array_equal(rows_a, rows_b)
    print(f"tensorflow mid-epoch resume: weights bit-identical {exact}, rows equal {same_rows}")


def test_a_partial_checkpoint_that_cannot_continue_its_epoch_is_set_aside(
    tmp_path: Path,
) -> None:
    """A damaged (or no longer fitting) partial state does not block the rerun: it is
    discarded with a warning and training resumes from the last finished epoch."""
    args = train_args("torch", "train.epochs=2 train.batch_size=1", _data_config(tmp_path, 4_000))
    results = tmp_path / "results"
    exp, partial, _, _ = _preempt_mid_epoch(args, results, tmp_path / "run.log",
                                            signal.SIGTERM, after_s=1.0)  # fmt: skip
    listed = read_record(results, str(exp.relative_to(results)))
    assert listed["status"] == "incomplete", listed  # preempted: not failed, it resumes
    (sidecar,) = (exp / "checkpoints").glob("partial-*.json")
    record = json.loads(sidecar.read_text())
    record["loop"]["partial"]["batches"] = 10**6  # more batches than the epoch has
    sidecar.write_text(json.dumps(record))
    code, out = run_luigi_to_end("Train", args, results, tmp_path / "rerun.log")
    assert code == 0, out
    log = (exp / "train.log").read_text()
    assert "cannot continue its epoch" in log and "resuming from the last finished" in log, log
    run = json.loads((exp / "run.json").read_text())
    assert run["status"] == "done" and "resumed_after_batch" not in run, run
    assert run["resumed_from_epoch"] == (partial["epoch"] - 1 or None), run
    assert metric_epochs(exp) == [1, 2]
    assert not list((exp / "checkpoints").glob("partial-*"))

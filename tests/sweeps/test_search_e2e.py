"""Searches end to end through the real ``luigi`` command: resume after kill -9, raising
``trials``, pruning. Every trial is an ordinary experiment, so run records tell what ran."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.store.summary import read_record
from tests.support import CONFIGS, REPO, luigi_command, run_luigi
from tests.sweeps.helpers import (
    TORCH,
    attempts,
    evaluated,
    search_summary,
    tiny_search,
    trial_rows,
)

TF = CONFIGS / "model" / "mlp_tf.yaml"

pytestmark = pytest.mark.slow

FINISHED = {"complete", "pruned"}


def _trained_once(results_dir: Path) -> None:
    for experiment, lines in attempts(results_dir).items():
        assert [line["status"] for line in lines].count("done") == 1, (experiment, lines)


def test_tpe_search_killed_with_sigkill_resumes_without_losing_a_trial(
    tmp_path: Path, results_dir: Path
) -> None:
    search = tiny_search(tmp_path, trials=6, epochs=4)
    command = [*luigi_command(), "--module", "pipelines", "Sweep", "--sweep-config", str(search)]
    command += ["--results-dir", str(results_dir), "--local-scheduler"]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        # Kill in the middle of a trial: two evaluated, a third one training.
        while not (
            len(evaluated(results_dir)) >= 2
            and len(attempts(results_dir)) > len(evaluated(results_dir))
        ):
            assert proc.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "the search made no progress"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = evaluated(results_dir)
    runs_before = attempts(results_dir)
    assert len(done_before) < 6

    rerun = run_luigi("Sweep", "--sweep-config", search, results_dir=results_dir)
    assert rerun.returncode == 0, rerun.output[-3000:]
    rows = trial_rows(results_dir)
    finished = [r for r in rows if r["state"] in FINISHED]
    assert len(finished) == 6, rows
    # The trial that was running when the worker died is "interrupted" (not a failure,
    # not counted) and its parameters asked again, so its experiment resumed and finished.
    (died,) = [r for r in rows if r["state"] == "interrupted"]
    assert not [r for r in rows if r["state"] == "failed"], rows
    (retry,) = [r for r in finished if r["experiment"] == died["experiment"]]
    assert died["error"] == f"worker died; asked again as trial {retry['trial']}", died
    (text,) = (results_dir / "sweeps").glob("*/summary.txt")
    assert "1 interrupted" in text.read_text() and "failed" not in text.read_text()
    assert not [r for r in rows if r["state"] in ("running", "waiting")]
    runs_after = attempts(results_dir)
    for experiment in done_before:
        assert runs_after[experiment] == runs_before[experiment], experiment
    _trained_once(results_dir)
    assert {str(r["experiment"]) for r in finished} <= set(runs_after)

    again = run_luigi("Sweep", "--sweep-config", search, results_dir=results_dir)
    assert again.returncode == 0, again.output[-3000:]
    assert again.ran == []
    assert attempts(results_dir) == runs_after


def test_raising_trials_continues_the_same_study(tmp_path: Path, results_dir: Path) -> None:
    search = tiny_search(tmp_path, trials=3, epochs=2, sampler="random")
    first = run_luigi("Sweep", "--sweep-config", search, results_dir=results_dir)
    assert first.returncode == 0, first.output[-3000:]
    rows = trial_rows(results_dir)
    assert sorted(r["trial"] for r in rows) == [0, 1, 2]
    assert all(r["state"] == "complete" for r in rows)
    assert rows == sorted(rows, key=lambda r: -float(str(r["value"])))  # best first
    runs = attempts(results_dir)

    search.write_text(search.read_text().replace("trials: 3", "trials: 5"))
    more = run_luigi("Sweep", "--sweep-config", search, results_dir=results_dir)
    assert more.returncode == 0, more.output[-3000:]
    assert len(list((results_dir / "sweeps").iterdir())) == 1, "a new study was started"
    rows = trial_rows(results_dir)
    assert sorted(r["trial"] for r in rows) == [0, 1, 2, 3, 4]
    after = attempts(results_dir)
    for experiment, lines in runs.items():
        assert after[experiment] == lines, experiment
    new = {str(r["experiment"]) for r in rows if int(str(r["trial"])) >= 3}
    assert set(after) - set(runs) <= new
    _trained_once(results_dir)


def test_grid_search_runs_each_point_once_and_fails_refused_suggestions_alone(
    tmp_path: Path, results_dir: Path
) -> None:
    """The grid sampler walks its whole grid, each point once, and ends cleanly; a point
    the configs refuse (each value fits alone, not together: val + test splits of 1.1)
    fails its own trial with the config's error, and the search goes on."""
    search = tiny_search(tmp_path, trials=10, epochs=1, sampler="grid")
    search.write_text(
        search.read_text().replace(
            "    train.optimizer.lr: {low: 0.0001, high: 0.1, log: true}\n"
            "    model.params.hidden: {choices: [[8], [16, 8]]}\n",
            "    data.split.val: {choices: [0.1, 0.5]}\n"
            "    data.split.test: {choices: [0.2, 0.6]}\n",
        )
    )
    first = run_luigi("Sweep", "--sweep-config", search, results_dir=results_dir)
    assert first.returncode != 0, first.output[-3000:]
    assert "Traceback" not in first.output, first.output[-3000:]
    rows = trial_rows(results_dir)
    states = {(str(r["data.split.val"]), str(r["data.split.test"])): r["state"] for r in rows}
    assert len(rows) == len(states) == 4, rows  # every point, each once
    assert states == {
        ("0.1", "0.2"): "complete",
        ("0.1", "0.6"): "complete",
        ("0.5", "0.2"): "complete",
        ("0.5", "0.6"): "failed",
    }, rows
    (text,) = (results_dir / "sweeps").glob("*/summary.txt")
    assert "val + test must be below 1" in text.read_text()
    _trained_once(results_dir)

    # Failed trials count towards the budget: the finished search asks nothing more.
    again = run_luigi("Sweep", "--sweep-config", search, results_dir=results_dir)
    assert again.returncode == 0 and "SearchShard" not in again.ran, again.output[-3000:]
    assert len(trial_rows(results_dir)) == 4


def test_pruned_trials_stop_early_and_count_as_complete(tmp_path: Path, results_dir: Path) -> None:
    epochs = 4
    search = tiny_search(tmp_path, trials=6, epochs=epochs, pruner="median", startup_trials=1)
    result = run_luigi("Sweep", "--sweep-config", search, results_dir=results_dir)
    assert result.returncode == 0, result.output[-3000:]
    rows = trial_rows(results_dir)
    pruned, complete = _pruned_and_complete(results_dir, epochs)
    assert pruned and complete, rows
    text = next((results_dir / "sweeps").glob("*/summary.txt")).read_text()
    assert "pruned" in text
    again = run_luigi("Sweep", "--sweep-config", search, results_dir=results_dir)
    assert again.returncode == 0 and again.ran == [], again.output[-3000:]
    # forge ls shows them as pruned; forge plot draws the optimisation history.
    listing = _forge("ls", str(results_dir))
    assert listing.count("pruned") == len(pruned), listing
    (folder,) = (results_dir / "sweeps").iterdir()
    image = tmp_path / "history.png"
    drawn = _forge("plot", "--search", str(folder), "--output", str(image))
    assert f"({len(rows)} trials)" in drawn and image.read_bytes()[:4] == b"\x89PNG"


def _pruned_and_complete(
    results_dir: Path, epochs: int
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The search's pruned and complete trials, after checking each against its records:
    a pruned trial stopped early and says so in run.json, a complete one trained all."""
    rows = trial_rows(results_dir)
    assert {r["state"] for r in rows} <= FINISHED, rows
    pruned = [r for r in rows if r["state"] == "pruned"]
    complete = [r for r in rows if r["state"] == "complete"]
    for row in pruned:
        record = read_record(results_dir, str(row["experiment"]))
        assert record["status"] == "pruned", record
        assert record["epochs"] < epochs, "a pruned trial trained every epoch"
        run = (results_dir / str(row["experiment"]) / "run.json").read_text()
        assert '"end_reason": "pruned"' in run
        metrics = (results_dir / str(row["experiment"]) / "metrics.csv").read_text()
        assert len(metrics.splitlines()) - 1 == record["epochs"] < epochs
    for row in complete:
        record = read_record(results_dir, str(row["experiment"]))
        assert record["status"] == "done" and record["epochs"] == epochs
    return pruned, complete


@pytest.mark.parametrize(
    ("sampler", "pruner", "model"),
    [
        pytest.param("cmaes", "asha", TORCH, id="cmaes-asha-torch"),
        pytest.param(
            "tpe",
            "median",
            TF,
            id="tpe-median-tensorflow",
            marks=[
                pytest.mark.tensorflow,
                pytest.mark.skipif(
                    importlib.util.find_spec("tensorflow") is None, reason="no TensorFlow"
                ),
            ],
        ),
    ],
)
def test_other_samplers_pruners_and_tensorflow_trials(
    tmp_path: Path, results_dir: Path, sampler: str, pruner: str, model: Path
) -> None:
    epochs, trials = 4, 6
    search = tiny_search(
        tmp_path, trials, epochs=epochs, sampler=sampler, pruner=pruner, startup_trials=1,
        model=model,
    )  # fmt: skip
    result = run_luigi("Sweep", "--sweep-config", search, results_dir=results_dir)
    assert result.returncode == 0, result.output[-3000:]
    summary = search_summary(results_dir)
    assert (summary["sampler"], summary["pruner"]) == (sampler, pruner), summary
    pruned, complete = _pruned_and_complete(results_dir, epochs)
    assert len(pruned) + len(complete) == trials
    learning_rates = {r["train.optimizer.lr"] for r in pruned + complete}
    assert len(learning_rates) == trials, "the sampler proposed the same point twice"
    if pruner == "median":
        assert pruned, "the median pruner stopped no trial"
    again = run_luigi("Sweep", "--sweep-config", search, results_dir=results_dir)
    assert again.returncode == 0 and again.ran == [], again.output[-3000:]


def _forge(*args: str) -> str:
    forge = Path(sys.executable).with_name("forge")
    proc = subprocess.run(
        [str(forge), *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout

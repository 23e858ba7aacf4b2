"""Sweeps end to end through the real ``luigi`` command: sharing, resuming, failures, forks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO, luigi_command, run_luigi
from tests.sweeps.helpers import TF, TORCH, attempts, evaluated, summary_rows, tiny_sweep

pytestmark = pytest.mark.slow


@pytest.mark.tensorflow
def test_grid_over_two_frameworks_shares_data_and_reruns_nothing(
    tmp_path: Path, results_dir: Path
) -> None:
    pytest.importorskip("tensorflow")
    sweep = tiny_sweep(
        tmp_path,
        "{model.params.hidden: [[8], [16], [32]], train.optimizer.lr: [0.01, 0.001]}",
        models=(TORCH, TF),
    )
    first = run_luigi("Sweep", "--sweep-config", sweep, results_dir=results_dir)
    assert first.returncode == 0, first.output[-3000:]
    assert len(evaluated(results_dir)) == 12
    assert len(list(results_dir.glob("*/data.h5"))) == 1
    runs = attempts(results_dir)
    assert len(runs) == 12 and all(len(r) == 2 for r in runs.values())
    rows = summary_rows(results_dir)
    assert {r["framework"] for r in rows} == {"torch", "tensorflow"}
    assert all(r["status"] == "done" and "test_accuracy" in r for r in rows)
    assert (results_dir / "sweeps").glob("*/summary.csv")

    again = run_luigi("Sweep", "--sweep-config", sweep, results_dir=results_dir)
    assert again.returncode == 0, again.output[-3000:]
    assert again.ran == []
    assert attempts(results_dir) == runs


def test_killed_sweep_reruns_only_missing_experiments(tmp_path: Path, results_dir: Path) -> None:
    sweep = tiny_sweep(tmp_path, "{train.seed: [0, 1, 2, 3, 4, 5, 6, 7]}")
    command = [
        *luigi_command(),
        "--module",
        "pipelines",
        "Sweep",
        "--sweep-config",
        str(sweep),
        "--results-dir",
        str(results_dir),
        "--local-scheduler",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while len(evaluated(results_dir)) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "the sweep made no progress"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = evaluated(results_dir)
    runs_before = attempts(results_dir)
    assert 2 <= len(done_before) < 8, "the sweep was not interrupted half-way"

    rerun = run_luigi("Sweep", "--sweep-config", sweep, results_dir=results_dir)
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert len(evaluated(results_dir)) == 8
    runs_after = attempts(results_dir)
    for experiment in done_before:
        assert runs_after[experiment] == runs_before[experiment], experiment
    retrained = {e for e, r in runs_after.items() if r != runs_before.get(e)}
    assert retrained == set(runs_after) - done_before
    assert all(r[-1]["status"] == "done" for r in runs_after.values())


def test_broken_experiment_fails_sweep_but_others_complete(
    tmp_path: Path, results_dir: Path
) -> None:
    sweep = tiny_sweep(tmp_path, "{model.params.activation: [relu, bogus, tanh]}")
    result = run_luigi("Sweep", "--sweep-config", sweep, results_dir=results_dir)
    assert result.returncode != 0
    assert len(evaluated(results_dir)) == 2
    rows = {r["model.params.activation"]: r for r in summary_rows(results_dir)}
    assert rows["relu"]["status"] == rows["tanh"]["status"] == "done"
    assert rows["bogus"]["status"] == "failed"
    assert rows["bogus"]["failed_step"] == "BuildModel"
    assert "bogus" in str(rows["bogus"]["error"])
    (text,) = (results_dir / "sweeps").glob("*/summary.txt")
    assert "failed:" in text.read_text() and "bogus" in text.read_text()
    assert "SweepError" in result.output


_FORKED = """
import sys, luigi
from tasks.sweep import Sweep
ok = luigi.build([Sweep(sweep_config=sys.argv[1], results_dir=sys.argv[2])],
                 local_scheduler=True, workers=2)
frameworks = [m for m in ("torch", "tensorflow") if m in sys.modules]
print("FRAMEWORKS", frameworks)
sys.exit(0 if ok and not frameworks else 1)
"""


def test_forked_workers_train_without_framework_in_parent(
    tmp_path: Path, results_dir: Path
) -> None:
    sweep = tiny_sweep(tmp_path, "{train.seed: [0, 1]}")
    proc = subprocess.run(
        [sys.executable, "-c", _FORKED, str(sweep), str(results_dir)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "FRAMEWORKS []" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(evaluated(results_dir)) == 2


def test_sweep_defers_the_export_until_the_first_code_free_load(
    tmp_path: Path, results_dir: Path
) -> None:
    import json

    import numpy as np

    from tasks import LoadTrained
    from tests.support import experiment_dirs

    sweep = tiny_sweep(tmp_path, "{train.seed: [0]}")
    result = run_luigi("Sweep", "--sweep-config", sweep, results_dir=results_dir)
    assert result.returncode == 0, result.output[-3000:]
    (exp,) = experiment_dirs(results_dir)
    export = json.loads((exp / "run.json").read_text())["export"]
    assert export["deferred"] is True and export["ok"] is False
    assert not list((exp / "model").glob("*.pt2")), "the sweep exported after all"
    # The evaluation's confusion matrix is stored as counts, not drawn.
    (counts,) = results_dir.glob("*/*/*/eval/*/confusion.json")
    assert sum(map(sum, json.loads(counts.read_text())["matrix"])) > 0

    x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    code_free = LoadTrained(exp, code_free=True)
    expected = LoadTrained(exp).predict(x)
    assert np.allclose(code_free.predict(x), expected, atol=1e-6)
    export = json.loads((exp / "run.json").read_text())["export"]
    assert export["ok"] is True and (exp / export["file"]).exists()
    again = LoadTrained(exp, code_free=True)  # uses the file now written
    assert np.allclose(again.predict(x), expected, atol=1e-6)


_MUTATING_METRIC = '''
import torch

from tasks import register_metric


@register_metric("mean_then_shift")
def mean_then_shift(outputs, batch):
    """What a careless metric does: it reads, then changes its input in place."""
    seen = float(batch["x"].mean())
    batch["x"] -= 1.0  # numpy, in place
    torch.from_numpy(batch["x"]).sub_(1.0)  # torch, sharing the memory
    return seen
'''


def test_a_metric_that_changes_its_input_changes_nothing_else(
    tmp_path: Path, results_dir: Path
) -> None:
    """One worker process evaluates three experiments on the same split: each metric call
    sees the stored data, whatever the previous call did to its arrays."""
    (tmp_path / "forge_mutating_metric.py").write_text(_MUTATING_METRIC)
    evaluation = tmp_path / "eval.yaml"
    evaluation.write_text("split: test\ncheckpoint: best\nmetrics: [accuracy, mean_then_shift]\n")
    sweep = tiny_sweep(tmp_path, "{train.seed: [0, 1, 2]}")
    sweep.write_text(sweep.read_text() + f"eval: [{evaluation}]\n")
    env = {"FORGE_PLUGINS": "forge_mutating_metric", "PYTHONPATH": str(tmp_path)}
    result = run_luigi("Sweep", "--sweep-config", sweep, results_dir=results_dir, env=env)
    assert result.returncode == 0, result.output[-3000:]
    seen = [
        json.loads(path.read_text())["metrics"]["mean_then_shift"]
        for path in sorted(results_dir.glob("*/*/*/eval/*/metrics.json"))
    ]
    assert len(seen) == 3 and len(set(seen)) == 1, seen


def test_identical_local_scheduler_commands_share_one_shard(
    tmp_path: Path, results_dir: Path
) -> None:
    """Two identical ``--local-scheduler`` commands on one host, one shard: the second
    passes over the experiment the first is training and trains the others, instead of
    waiting on the first one's lock. The first holds its first experiment until the
    second has finished one, so the order of events is fixed on any machine."""
    from tests.reliability.crashkit import pause_at, pausing_model
    from tests.sweeps.helpers import training_pids

    model = pausing_model("torch", tmp_path)
    sweep = tiny_sweep(tmp_path, "{train.seed: [0, 1, 2, 3]}", models=(model,))
    hold = pause_at(tmp_path, 1, release=True)
    command = [*luigi_command(), "--module", "pipelines", "Sweep", "--sweep-config", str(sweep)]
    command += ["--results-dir", str(results_dir), "--local-scheduler", "--shards", "1"]

    def start(name: str, env: dict[str, str]) -> subprocess.Popen[str]:
        log = (tmp_path / f"{name}.log").open("w")
        return subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            stdout=log, stderr=log, text=True,
        )  # fmt: skip

    first = start("first", hold)
    second: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 120
        while not Path(hold["PAUSE_FILE"]).exists():
            assert first.poll() is None and time.monotonic() < deadline, "first never trained"
            time.sleep(0.1)
        second = start("second", {"FORGE_PLUGINS": hold["FORGE_PLUGINS"]})
        deadline = time.monotonic() + 120
        while not any(second.pid in p for p in training_pids(results_dir).values()):
            if time.monotonic() > deadline or second.poll() is not None:
                break
            time.sleep(0.2)
        Path(hold["PAUSE_RELEASE"]).touch()
        codes = [first.wait(timeout=300), second.wait(timeout=300)]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    logs = "\n".join((tmp_path / f"{n}.log").read_text()[-2000:] for n in ("first", "second"))
    assert codes == [0, 0], logs
    pids = training_pids(results_dir)
    assert len(pids) == 4 and all(len(p) == 1 for p in pids.values()), pids
    trained_by = [next(iter(p)) for p in pids.values()]
    assert trained_by.count(first.pid) >= 1 and trained_by.count(second.pid) >= 1, (pids, logs)


def test_sigterm_to_a_forking_command_stops_its_task_processes_too(
    tmp_path: Path, results_dir: Path
) -> None:
    """``--workers 2``: SIGTERM sent to the command alone (a container's stop) reaches the
    forked shards, which checkpoint and exit; the command exits non-zero and leaves no
    process training on its own, and a rerun finishes the sweep."""
    from tests.reliability.crashkit import pause_at, pausing_model
    from tests.sweeps.helpers import training_pids

    model = pausing_model("torch", tmp_path)
    sweep = tiny_sweep(tmp_path, "{train.seed: [0, 1]}", models=(model,), epochs=2)
    hold = pause_at(tmp_path, 1, release=True)  # each forked shard holds at its first batch
    command = [*luigi_command(), "--module", "pipelines", "Sweep", "--sweep-config", str(sweep)]
    command += ["--results-dir", str(results_dir), "--local-scheduler", "--workers", "2"]
    env = {**os.environ, **hold, "PYTHONPATH": str(REPO)}
    log = tmp_path / "sweep.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=fh, stderr=fh)
    try:
        deadline = time.monotonic() + 120
        while not Path(hold["PAUSE_FILE"]).exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGTERM)  # the command only, not its process group
        Path(hold["PAUSE_RELEASE"]).touch()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert code != 0 and code != -signal.SIGTERM, out[-3000:]
    assert "PreemptedError" in out, out[-3000:]
    trained_by = {pid for pids in training_pids(results_dir).values() for pid in pids}
    assert trained_by and proc.pid not in trained_by, "the shards were not forked"
    for pid in trained_by:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # no forked shard outlives the command
    again = run_luigi("Sweep", "--sweep-config", sweep, results_dir=results_dir,
                      env={"FORGE_PLUGINS": hold["FORGE_PLUGINS"]})  # fmt: skip
    assert again.returncode == 0, again.output[-3000:]

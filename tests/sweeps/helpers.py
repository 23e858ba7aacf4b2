"""Helpers shared by the sweep tests: tiny sweep files and reading run records."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import CONFIGS, REPO, luigi_command, write_yaml

DATA = CONFIGS / "data" / "moons.yaml"
TORCH = CONFIGS / "model" / "mlp_torch.yaml"
TF = CONFIGS / "model" / "mlp_tf.yaml"


def tiny_sweep(
    folder: Path, grid: str, models: tuple[Path, ...] = (TORCH,), epochs: int = 1
) -> Path:
    """A sweep over moons with ``epochs``-epoch training, varying ``grid`` (a YAML mapping)."""
    train = write_yaml(folder / "train.yaml", f"epochs: {epochs}\nbatch_size: 128\ndevice: cpu\n")
    model_list = ", ".join(str(m) for m in models)
    return write_yaml(
        folder / "sweep.yaml",
        f"data: [{DATA}]\nmodel: [{model_list}]\ntrain: [{train}]\ngrid: {grid}\n",
    )


def attempts(results_dir: Path) -> dict[str, list[dict[str, object]]]:
    """Per experiment directory, the training attempts recorded in ``runs.jsonl``."""
    out = {}
    for log in sorted(results_dir.glob("*/*/*/runs.jsonl")):
        lines = [json.loads(line) for line in log.read_text().splitlines() if line]
        out[str(log.parent.relative_to(results_dir))] = lines
    return out


def evaluated(results_dir: Path) -> set[str]:
    """Experiment directories whose Evaluate finished."""
    return {
        str(p.parent.parent.parent.relative_to(results_dir))
        for p in results_dir.glob("*/*/*/eval/*/_SUCCESS")
    }


def summary_rows(results_dir: Path) -> list[dict[str, object]]:
    """The rows of the (single) sweep summary under ``results_dir``."""
    (summary,) = (results_dir / "sweeps").glob("*/summary.json")
    return list(json.loads(summary.read_text())["experiments"])


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_luigid(folder: Path) -> Iterator[int]:
    """A real ``luigid`` on loopback with the repository's ``luigi.cfg``; yields its port."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    luigid = Path(sys.executable).with_name("luigid")
    command = [str(luigid), "--port", str(port), "--address", "127.0.0.1"]
    command += ["--logdir", str(folder), "--state-path", str(folder / "state.pickle")]
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}
    with (folder / "luigid.log").open("w") as log:
        proc = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (folder / "luigid.log").read_text()[-2000:]
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, f"luigid did not listen on port {port}"
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass
class Worker:
    """One ``luigi ... Sweep`` worker command started in the background."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 600) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_worker(
    sweep: Path,
    results_dir: Path,
    port: int,
    log: Path,
    *extra: str,
    keep_alive: bool = True,
    env: dict[str, str] | None = None,
) -> Worker:
    """``luigi --module pipelines Sweep ... --workers 1`` against the luigid on ``port``.

    With one worker process Luigi runs tasks in the command's own process, so the pid in
    an experiment's ``runs.jsonl`` is the pid of the worker command that trained it.
    """
    command = [*luigi_command(), "--module", "pipelines", "Sweep", "--sweep-config", str(sweep)]
    command += ["--results-dir", str(results_dir), "--scheduler-host", "127.0.0.1"]
    command += ["--scheduler-port", str(port), "--workers", "1", *extra]
    if keep_alive:
        command.append("--worker-keep-alive")
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
    with log.open("w") as fh:
        proc = subprocess.Popen(command, cwd=REPO, env=full_env, stdout=fh, stderr=fh)
    return Worker(proc, log)


def training_pids(results_dir: Path) -> dict[str, set[int]]:
    """Per experiment directory, the pids of the processes that started training it."""
    return {
        exp: {int(str(line["pid"])) for line in lines if line["status"] == "running"}
        for exp, lines in attempts(results_dir).items()
    }


def tiny_search(
    folder: Path,
    trials: int,
    *,
    epochs: int = 3,
    pruner: str = "none",
    sampler: str = "tpe",
    startup_trials: int = 5,
    model: Path = TORCH,
) -> Path:
    """A search over moons (learning rate and hidden sizes), ``epochs``-epoch training of
    ``model`` (the torch MLP unless told)."""
    train = write_yaml(folder / "train.yaml", f"epochs: {epochs}\nbatch_size: 128\ndevice: cpu\n")
    return write_yaml(
        folder / "search.yaml",
        f"data: [{DATA}]\nmodel: [{model}]\ntrain: [{train}]\n"
        "search:\n"
        "  metric: val_accuracy\n"
        "  direction: maximize\n"
        f"  trials: {trials}\n"
        f"  sampler: {sampler}\n"
        "  seed: 0\n"
        f"  pruner: {pruner}\n"
        f"  startup_trials: {startup_trials}\n"
        "  space:\n"
        "    train.optimizer.lr: {low: 0.0001, high: 0.1, log: true}\n"
        "    model.params.hidden: {choices: [[8], [16, 8]]}\n",
    )


def search_summary(results_dir: Path) -> dict[str, object]:
    """The (single) search summary under ``results_dir``."""
    (summary,) = (results_dir / "sweeps").glob("*/summary.json")
    return dict(json.loads(summary.read_text()))


def trial_rows(results_dir: Path) -> list[dict[str, object]]:
    """The trials of the (single) search summary under ``results_dir``, best first."""
    return list(search_summary(results_dir)["trials_table"])  # type: ignore[call-overload]

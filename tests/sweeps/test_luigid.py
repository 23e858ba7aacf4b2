"""A sweep on a real ``luigid`` with three concurrent worker processes: exactly once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO, luigi_command
from tests.sweeps.helpers import attempts, evaluated, summary_rows, tiny_sweep

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "luigid exited at start-up"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"luigid did not listen on port {port}")


def test_three_workers_train_every_experiment_exactly_once(
    tmp_path: Path, results_dir: Path
) -> None:
    sweep = tiny_sweep(tmp_path, "{model.params.hidden: [[8], [16]], train.seed: [0, 1, 2]}")
    port = _free_port()
    state = tmp_path / "luigid"
    state.mkdir()
    luigid = Path(sys.executable).with_name("luigid")
    scheduler = subprocess.Popen(
        [
            str(luigid),
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
            "--logdir",
            str(state),
            "--state-path",
            str(state / "state.pickle"),
            "--pidfile",
            str(state / "luigid.pid"),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[subprocess.Popen[str]] = []
    try:
        _wait_listening(port, scheduler)
        command = [
            *luigi_command(),
            "--module",
            "pipelines",
            "Sweep",
            "--sweep-config",
            str(sweep),
            "--results-dir",
            str(results_dir),
            "--scheduler-host",
            "127.0.0.1",
            "--scheduler-port",
            str(port),
            "--workers",
            "2",
            "--worker-keep-alive",
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for i in range(3):
            log = (tmp_path / f"worker{i}.log").open("w")
            workers.append(
                subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log, text=True)
            )
        codes = [w.wait(timeout=600) for w in workers]
        logs = "".join((tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(3))
        # 10 ([retcode] already_running): some of its tasks were run by the other workers.
        assert set(codes) <= {0, 10}, logs
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        scheduler.terminate()
        scheduler.wait(timeout=30)
    assert scheduler.poll() is not None
    assert len(evaluated(results_dir)) == 6
    runs = attempts(results_dir)
    assert len(runs) == 6
    for experiment, lines in runs.items():
        assert [line["status"] for line in lines] == ["running", "done"], experiment
    assert len(list(results_dir.glob("*/data.h5"))) == 1
    assert all(r["status"] == "done" for r in summary_rows(results_dir))
    assert list((results_dir / "sweeps").glob("*/_SUCCESS"))
    hosts_pids = {(lines[0]["host"], lines[0]["pid"]) for lines in runs.values()}
    assert len(hosts_pids) >= 2, "all experiments ran in one process; no concurrency tested"

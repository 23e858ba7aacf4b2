"""``forge rm`` and ``forge gc``: show, ask, delete exactly the right things."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.store.catalog import load_catalog
from tests.cli.forge_support import Trained, copy_results, forge, invoke, listing, trained


@pytest.fixture(scope="module")
def exps(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained(tmp_path_factory)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_rm_asks_and_deletes_only_that_experiment(exps: Trained, tmp_path: Path) -> None:
    root = copy_results(exps.root, tmp_path / "results")
    victim, *others = listing(root)
    code, output = invoke("rm", victim["id"][:8], "-r", root, input="n\n")
    assert code == 1 and "would delete" in output and victim["path"] in output
    assert (root / victim["path"]).is_dir()  # answered no: nothing deleted
    code, output = invoke("rm", victim["id"][:8], "-r", root, input="y\n")
    assert code == 0 and "deleted 1 item" in output
    assert not (root / victim["path"]).exists()
    assert (root / victim["path"]).parent.is_dir()  # the shared model step stays
    assert sorted(r["id"] for r in listing(root)) == sorted(r["id"] for r in others)


def test_rm_refuses_a_running_experiment(exps: Trained, tmp_path: Path) -> None:
    root = copy_results(exps.root, tmp_path / "results")
    record = listing(root)[0]
    fd = os.open(root / record["path"] / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, output = invoke("rm", record["id"][:8], "-r", root, "--yes")
        assert code == 1 and "running task" in output
    finally:
        os.close(fd)
    assert (root / record["path"]).is_dir()


def test_gc_removes_crash_leftovers_and_nothing_else(exps: Trained, tmp_path: Path) -> None:
    root = copy_results(exps.root, tmp_path / "results")
    first = root / listing(root)[0]["path"]
    model_dir = first.parent
    dead = _dead_pid()
    leftover_file = first / f".tmp-{dead}-0a1b2c3d-metrics.json"
    leftover_file.write_text("{")
    leftover_dir = model_dir / f".tmp-{dead}-0a1b2c3d-weights"
    leftover_dir.mkdir()
    live_tmp = first / f".tmp-{os.getppid()}-0a1b2c3d-run.json"  # a live writer's: kept
    live_tmp.write_text("{")
    crashed = model_dir / "tiny_train-0badc0de"
    crashed.mkdir()
    (crashed / ".digest").write_text("0badc0de" * 8 + "\n")
    (crashed / "run.json").write_text('{"status": "running"}')  # killed: its lock is free
    running = model_dir / "tiny_train-0c0ffee0"
    running.mkdir()
    (running / ".digest").write_text("0c0ffee0" * 8 + "\n")
    user_dir = root / "my-notes"
    user_dir.mkdir()
    (user_dir / "ideas.txt").write_text("keep me")
    (root / "README.txt").write_text("keep me too")
    fd = os.open(running / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        statuses = {r["path"].rsplit("/", 1)[-1]: r["status"] for r in listing(root)}
        assert statuses["tiny_train-0badc0de"] == "incomplete"
        assert statuses["tiny_train-0c0ffee0"] == "running"
        code, output = invoke("gc", root, input="n\n")
        assert code == 1 and "tiny_train-0badc0de" in output and leftover_dir.name in output
        assert crashed.exists() and leftover_file.exists()
        code, output = invoke("gc", root, "--yes")
        assert code == 0, output
    finally:
        os.close(fd)
    assert "deleted 3 item(s)" in output
    assert not crashed.exists() and not leftover_file.exists() and not leftover_dir.exists()
    assert running.is_dir() and live_tmp.exists()
    assert (user_dir / "ideas.txt").read_text() == "keep me"
    assert (root / "README.txt").exists()
    assert len([r for r in load_catalog(root).records if r["status"] == "done"]) == len(exps.runs)
    code, output = invoke("gc", root, "--yes")  # its lock is free now: a crashed leftover
    assert code == 0 and "tiny_train-0c0ffee0" in output and not running.exists()
    code, output = invoke("gc", root, "--yes")
    assert code == 0 and "nothing to delete" in output


def test_gc_subprocess_yes(exps: Trained, tmp_path: Path) -> None:
    root = copy_results(exps.root, tmp_path / "results")
    crashed = root / listing(root)[0]["path"] / "eval" / "default-00000000"
    crashed.mkdir()
    (crashed / ".digest").write_text("0" * 64 + "\n")
    proc = forge("gc", root, "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "incomplete evaluation step" in proc.stdout and not crashed.exists()

"""Helpers of the reliability tests: start real Train processes, kill them, inspect what is left.

Everything here works on real files and real processes: a ``luigi ... Train`` command is
started with :func:`start_luigi`, stopped with ``SIGKILL`` when a trigger fires
(:func:`wait_until`), and the experiment directory is then checked with the framework's
own loaders.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.support import CONFIGS, MODEL_CONFIGS, REPO, luigi_argv

TMP_PATTERN = re.compile(r"^\.tmp-\d+-[0-9a-f]{8}-")
_EPOCH_LINE = re.compile(r" epoch (\d+)/(\d+) ")
_RESUME_LINE = re.compile(r"resuming from checkpoint \S+ \(epoch (\d+)\)")


def tensorflow_available() -> bool:
    """Whether the TensorFlow backend and its example model config have landed."""
    return (
        MODEL_CONFIGS["tensorflow"].is_file()
        and (REPO / "tasks" / "backends" / "_tensorflow.py").is_file()
    )


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a luigi subprocess: the repository importable, frameworks quiet."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# Crash tests kill and resume at chosen epochs: every epoch gets its checkpoint, however
# fast (by default, one younger than a second is skipped).
EVERY_EPOCH = "train.checkpoint_min_interval_s=0"


def train_args(
    framework: str, overrides: str, data: Path | None = None, *, every_epoch: bool = True
) -> list[str]:
    """CLI arguments of a Train on tiny data (moons) with the framework's MLP, checkpointing
    every epoch (:data:`EVERY_EPOCH`) unless ``every_epoch`` is False."""
    return [
        "--data-config",
        str(data or CONFIGS / "data" / "moons.yaml"),
        "--model-config",
        str(MODEL_CONFIGS[framework]),
        "--overrides",
        f"{EVERY_EPOCH} {overrides}" if every_epoch else overrides,
    ]


@dataclass
class Running:
    """A started luigi process and the file its output goes to."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr together)."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the process (if it still runs) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def wait(self, timeout: float = 600) -> int:
        """Wait for a normal exit; returns the exit status."""
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.kill()
            self._log.close()
        return code


def start_luigi(
    task: str,
    args: Sequence[str],
    results_dir: Path,
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    prefix: Sequence[str] = (),
) -> Running:
    """Start a luigi command in the background, its output going to ``log_path``."""
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [*prefix, *luigi_argv(task, args, results_dir)],
        cwd=REPO,
        env=cli_env(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,  # rlimits / signal dispositions only; the test is single-threaded
    )
    return Running(proc, log_path, log)


def run_luigi_to_end(
    task: str,
    args: Sequence[str],
    results_dir: Path,
    log_path: Path,
    **kwargs: Any,
) -> tuple[int, str]:
    """Run a luigi command to its end; returns (exit status, output)."""
    running = start_luigi(task, args, results_dir, log_path, **kwargs)
    code = running.wait()
    return code, running.log_path.read_text(errors="replace")


def wait_until(
    condition: Callable[[], bool], proc: subprocess.Popen[bytes], poll: float = 0.001
) -> bool:
    """Poll ``condition`` until it holds (True) or ``proc`` has exited (False)."""
    while proc.poll() is None:
        try:
            if condition():
                return True
        except OSError:
            pass  # a file vanished between listing and reading it: look again
        time.sleep(poll)
    return False


# configs/data/moons.yaml: 1000 rows, 10 % for validation and 20 % for the test split.
MOONS_TRAIN_ROWS = 700


@dataclass
class Pause:
    """Where a Train started with :func:`pausing` holds still, and how to let it go on."""

    env: dict[str, str]
    args: list[str]

    @property
    def plain_env(self) -> dict[str, str]:
        """The environment of a run of the same model that never holds (a rerun, a control)."""
        return {"FORGE_PLUGINS": self.env["FORGE_PLUGINS"]}

    def reached(self) -> bool:
        """Whether the run holds at its chosen batch (a ``wait_until`` condition)."""
        return Path(self.env["PAUSE_FILE"]).exists()

    def release(self) -> None:
        """Let the held run go on (only when it was started with ``release=True``)."""
        assert "PAUSE_RELEASE" in self.env, "this pause holds until the process is killed"
        Path(self.env["PAUSE_RELEASE"]).touch()


PAUSE_PLUGINS = "tests.reliability.pause_plugins"
PAUSING_MODEL = "mlp_pausing"  # the name PAUSE_PLUGINS registers its model under


def pausing_model(framework: str, folder: Path) -> Path:
    """A model config (in ``folder``) naming the pausing plugin model of ``framework``."""
    config = folder / f"pausing_{framework}.yaml"
    config.write_text(f"framework: {framework}\nbuilder: {PAUSING_MODEL}\n")
    return config


def pause_at(
    folder: Path, batch: int, *, release: bool = False, stall_batch: int | None = None
) -> dict[str, str]:
    """The environment that holds a run of the pausing model at training batch ``batch``
    (1-based, counted over the process), writing ``folder/paused`` when it does.

    ``release=True`` holds until ``folder/release`` exists, otherwise until the process
    is killed. ``stall_batch`` sleeps 1.1 s on that batch.
    """
    env = {
        "FORGE_PLUGINS": PAUSE_PLUGINS,
        "PAUSE_AT_BATCH": str(batch),
        "PAUSE_FILE": str(folder / "paused"),
    }
    if release:
        env["PAUSE_RELEASE"] = str(folder / "release")
    if stall_batch is not None:
        env["PAUSE_STALL"] = f"{stall_batch}:1.1"
    return env


def pausing(
    framework: str,
    args: Sequence[str],
    folder: Path,
    *,
    after_epoch: int,
    batch_size: int,
    train_rows: int = MOONS_TRAIN_ROWS,
    release: bool = False,
    stall_epoch: int | None = None,
) -> Pause:
    """Train ``args`` with the pausing plugin model, held at the first batch after epoch
    ``after_epoch`` (see ``tests/reliability/pause_plugins.py``).

    Held there, epoch ``after_epoch`` is over (its checkpoint may still be committing on
    its own thread) and nothing of the next epoch has happened. ``release=True`` holds
    until :meth:`Pause.release`, otherwise until the process is killed. ``stall_epoch``
    makes that epoch's first batch last over a second, so that the TensorBoard scalars of
    its end are flushed (at most once a second) whatever the machine's speed.
    """
    per_epoch = -(-train_rows // batch_size)
    changed = list(args)
    changed[changed.index("--model-config") + 1] = str(pausing_model(framework, folder))
    stall = None if stall_epoch is None else (stall_epoch - 1) * per_epoch + 1
    env = pause_at(folder, after_epoch * per_epoch + 1, release=release, stall_batch=stall)
    return Pause(env, changed)


def experiment_dir(results_dir: Path) -> Path | None:
    """The (only) Train directory under ``results_dir``, once it has been claimed."""
    found = sorted(p.parent for p in results_dir.glob("*/*/*/.digest"))
    return found[0] if found else None


def checkpoint_committed(results_dir: Path, epoch: int) -> Callable[[], bool]:
    """A ``wait_until`` condition: the experiment's checkpoint of ``epoch`` is committed."""

    def condition() -> bool:
        exp = experiment_dir(results_dir)
        return exp is not None and (exp / "checkpoints" / f"epoch-{epoch:04d}.json").exists()

    return condition


def experiment_dirs(results_dir: Path) -> list[Path]:
    """Every Train directory under ``results_dir``."""
    return sorted(p.parent for p in results_dir.glob("*/*/*/.digest"))


def temp_entries(root: Path) -> list[Path]:
    """Forge temporaries (``.tmp-<pid>-<id>-…``) anywhere under ``root``."""
    return [p for p in root.rglob(".tmp-*") if TMP_PATTERN.match(p.name)]


def has_temp(folder: Path) -> bool:
    """Whether ``folder`` holds a Forge temporary right now."""
    try:
        return any(TMP_PATTERN.match(entry.name) for entry in os.scandir(folder))
    except FileNotFoundError:
        return False


def committed_epochs(exp: Path) -> list[int]:
    """Epochs whose checkpoint sidecar exists (the commit record), oldest first."""
    folder = exp / "checkpoints"
    epochs = []
    for sidecar in folder.glob("epoch-*.json"):
        record = json.loads(sidecar.read_text())
        assert (folder / record["file"]).is_file(), f"{sidecar} commits a missing file"
        epochs.append(int(record["epoch"]))
    return sorted(epochs)


def metric_epochs(exp: Path) -> list[int]:
    """The ``epoch`` column of metrics.csv, in file order (complete lines only)."""
    path = exp / "metrics.csv"
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    epochs = []
    for line in lines[1:]:
        head = line.split(",", 1)[0]
        if head.isdigit():
            epochs.append(int(head))
    return epochs


def log_events(text: str) -> tuple[list[int], list[int]]:
    """Epoch numbers trained and epochs resumed from, as logged in a piece of train.log."""
    trained = [int(m.group(1)) for m in _EPOCH_LINE.finditer(text)]
    resumed = [int(m.group(1)) for m in _RESUME_LINE.finditer(text)]
    return trained, resumed


def lock_is_free(lock_file: Path) -> bool:
    """Whether nobody holds the ``flock`` on ``lock_file`` (probed without waiting)."""
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


# -- loading what is on disk, with the frameworks' own safe loaders -----------------------


def load_torch_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a checkpoint; raises if it is unsafe or damaged."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "epoch"} <= set(state), f"{path} lacks checkpoint keys"
    return state


def load_weights_file(path: Path) -> dict[str, Any]:
    """Arrays of a weights file (safetensors or Keras ``.weights.h5``), read without code."""
    if path.name.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    import h5py
    import numpy as np

    arrays: dict[str, Any] = {}
    with h5py.File(path, "r") as fh:

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                arrays[name] = np.asarray(obj[()])

        fh.visititems(visit)
    return arrays


def open_session(exp: Path) -> tuple[Any, Any]:
    """A backend and a fresh training session for the experiment at ``exp``.

    Rebuilt from the experiment's own ``config.yaml`` and ``data.h5``, the way Train does,
    so that :meth:`TrainSession.load_checkpoint` can be called on its checkpoints.
    """
    import yaml

    from tasks.backends import get_backend
    from tasks.backends.base import TrainSettings
    from tasks.data.h5store import read_meta
    from tasks.registry import get_entry

    config = yaml.safe_load((exp / "config.yaml").read_text())
    model_cfg, train_cfg = config["model"], config["train"]
    backend = get_backend(model_cfg["framework"])
    meta = read_meta(exp.parent.parent / "data.h5")
    entry = get_entry("model", model_cfg["builder"], model_cfg["framework"])
    model = backend.build(entry, model_cfg["params"], meta, seed=model_cfg["seed"])
    settings = TrainSettings(
        epochs=train_cfg["epochs"],
        batch_size=train_cfg["batch_size"],
        optimizer=train_cfg["optimizer"],
        loss=train_cfg["loss"],
        seed=train_cfg["seed"],
        device="cpu",
        objective=None,
        meta=meta,
    )
    return backend, backend.session(model, settings)


def check_checkpoints_load(exp: Path, framework: str) -> list[Path]:
    """Load every checkpoint and best-weights file in ``exp/checkpoints``; return them.

    Torch checkpoints are loaded with ``torch.load(weights_only=True)``; every checkpoint
    is also restored into a fresh session through the backend, as resume does.
    """
    folder = exp / "checkpoints"
    if not folder.is_dir():
        return []
    loaded = []
    session = None
    for path in sorted(folder.iterdir()):
        if TMP_PATTERN.match(path.name) or path.suffix == ".json":
            continue
        if path.name.startswith("best-"):
            assert load_weights_file(path), f"{path} holds no weights"
        elif path.name.startswith("epoch-"):
            if framework == "torch":
                state = load_torch_checkpoint(path)
                assert int(state["epoch"]) == int(path.name[6:10])
            if session is None:
                _, session = open_session(exp)
            assert session.load_checkpoint(path) == int(path.name[6:10])
        else:
            continue
        loaded.append(path)
    return loaded

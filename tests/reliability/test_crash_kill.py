"""Crash safety: ``kill -9`` a Train at random moments, then check what is left and the rerun.

Each framework gets a seeded schedule of kills (set ``FORGE_CRASH_SEED`` to replay another
one). A kill is triggered at a random point in start-up, right after a checkpoint commit,
the moment a checkpoint or final-weights temporary file appears, or during the final
export. After every kill: nothing looks complete unless it is, every checkpoint on disk
loads (``torch.load(weights_only=True)`` for torch), metrics.csv has no duplicate epochs;
the next attempt resumes from the newest committed checkpoint; the final rerun completes
and leaves no temporary files behind.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.crashkit import (
    MODEL_CONFIGS,
    Running,
    check_checkpoints_load,
    committed_epochs,
    experiment_dir,
    has_temp,
    load_weights_file,
    log_events,
    metric_epochs,
    run_luigi_to_end,
    start_luigi,
    temp_entries,
    tensorflow_available,
    train_args,
    wait_until,
)

SEED = int(os.environ.get("FORGE_CRASH_SEED", "20260"))
EPOCHS = 5
OVERRIDES = {
    "torch": f"train.epochs={EPOCHS} train.batch_size=32 model.params.hidden=[256,256]",
    "tensorflow": f"train.epochs={EPOCHS} train.batch_size=32",
}
# torch chains train a scheduled, clipped, accumulated run (its state lives in the
# checkpoint sidecars and must survive every kill).
TRAIN_CONFIGS = {
    "torch": "scheduler: {name: step, step_size: 2, gamma: 0.5, warmup_epochs: 1}\n"
    "early_stopping: {patience: 100}\ngrad_clip: 1.0\naccumulate: 2\nkeep_checkpoints: 2\n",
}
TRIGGERS = ("startup", "after-commit", "checkpoint-write", "finishing", "final-write")
TRIGGER_WEIGHTS = (1, 3, 4, 2, 1)
MAX_ATTEMPTS = 6  # kills per experiment before it is run to the end


def _kill_target(framework: str) -> int:
    # >= 20 kills in total over both frameworks; all of them on torch until TF exists.
    if framework == "torch":
        return 14 if tensorflow_available() else 20
    return 6


@dataclass
class Trial:
    """One attempt that was killed."""

    chain: int
    attempt: int
    trigger: str
    fired: bool
    mid_write: bool
    committed: list[int] = field(default_factory=list)


def _framework_params() -> list[object]:
    return [
        pytest.param("torch", id="torch"),
        pytest.param(
            "tensorflow",
            id="tensorflow",
            marks=[
                pytest.mark.tensorflow,
                pytest.mark.skipif(
                    not tensorflow_available(),
                    reason="TensorFlow backend (configs/model/mlp_tf.yaml) not available",
                ),
            ],
        ),
    ]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A results directory with PrepareData and BuildModel done, per framework (built once)."""
    built: dict[str, Path] = {}

    def get(framework: str) -> Path:
        if framework not in built:
            root = tmp_path_factory.mktemp(f"upstream-{framework}")
            results = root / "results"
            code, out = run_luigi_to_end(
                "BuildModel",
                train_args(framework, OVERRIDES[framework])[:4]
                + ["--overrides", _model_overrides(framework)],
                results,
                root / "build.log",
            )
            assert code == 0, out
            built[framework] = results
        return built[framework]

    return get


def _model_overrides(framework: str) -> str:
    return " ".join(p for p in OVERRIDES[framework].split() if p.startswith("model."))


def _fire(
    trigger: str, running: Running, results: Path, rng: random.Random, resume_from: int
) -> bool:
    """Wait for ``trigger`` and SIGKILL; False when the process ended on its own first."""
    proc = running.proc

    def exp_path(*parts: str) -> Path | None:
        exp = experiment_dir(results)
        return exp.joinpath(*parts) if exp is not None else None

    def temp_in(folder: str) -> Callable[[], bool]:
        def check() -> bool:
            path = exp_path(folder)
            return path is not None and has_temp(path)

        return check

    if trigger == "startup":
        deadline = time.monotonic() + rng.uniform(0.2, 5.0)
        fired = wait_until(lambda: time.monotonic() >= deadline, proc, poll=0.01)
    elif trigger == "after-commit":
        epoch = min(EPOCHS, resume_from + rng.randint(1, 2))

        def committed() -> bool:
            path = exp_path("checkpoints", f"epoch-{epoch:04d}.json")
            return path is not None and path.exists()

        fired = wait_until(committed, proc)
        if fired:
            time.sleep(rng.uniform(0.0, 0.15))
    elif trigger == "checkpoint-write":
        fired = wait_until(temp_in("checkpoints"), proc)
    elif trigger == "final-write":
        fired = wait_until(temp_in("model"), proc)
    else:  # finishing: the last epoch is logged; export, final weights and marker follow

        def last_epoch_logged() -> bool:
            path = exp_path("train.log")
            return path is not None and f"epoch {EPOCHS}/{EPOCHS} " in path.read_text()

        fired = wait_until(last_epoch_logged, proc, poll=0.005)
        if fired:
            time.sleep(rng.uniform(0.0, 0.8))
    fired = fired and proc.poll() is None
    running.kill()
    return fired


def _check_complete(exp: Path, framework: str, resumed_from: int) -> None:
    """A finished experiment holds everything, and says where it resumed from."""
    assert (exp / "_SUCCESS").is_file()
    for name in ("config.yaml", "params.json", "run.json", "metrics.csv", "train.log"):
        assert (exp / name).is_file(), f"{name} missing in a complete experiment"
    run = json.loads((exp / "run.json").read_text())
    assert run["status"] == "done"
    assert run["resumed_from_epoch"] == (resumed_from or None)
    assert metric_epochs(exp) == list(range(1, EPOCHS + 1))
    for stem in ("last", "best"):
        files = [p for p in (exp / "model").glob(f"{stem}.*") if p.suffix != ".json"]
        assert files, f"model/{stem} weights missing"
        assert load_weights_file(files[0])
    assert json.loads((exp / "model" / "best.json").read_text())["epoch"] in range(1, EPOCHS + 1)
    check_checkpoints_load(exp, framework)


def _check_after_kill(exp: Path | None, framework: str, resumed_from: int, context: str) -> int:
    """Invariants of whatever a killed attempt left; returns the newest committed epoch."""
    if exp is None:
        return 0
    epochs = metric_epochs(exp)
    assert len(epochs) == len(set(epochs)), f"{context}: duplicate epochs {epochs}"
    assert epochs == list(range(1, len(epochs) + 1)), f"{context}: epochs {epochs}"
    committed = committed_epochs(exp)
    try:
        check_checkpoints_load(exp, framework)
    except Exception as err:  # pragma: no cover - the failure message is the point
        raise AssertionError(f"{context}: a checkpoint on disk does not load: {err!r}") from err
    for weights in (exp / "model").glob("*"):
        if weights.suffix in (".safetensors", ".h5") and not weights.name.startswith(".tmp-"):
            assert load_weights_file(weights), f"{context}: {weights} is empty"
    if (exp / "_SUCCESS").exists():
        _check_complete(exp, framework, resumed_from)
    return committed[-1] if committed else 0


@pytest.mark.slow
@pytest.mark.parametrize("framework", _framework_params())
def test_kill_minus_nine_at_random_moments(
    framework: str, tmp_path: Path, upstream: Callable[[str], Path]
) -> None:
    """Seeded SIGKILLs during Train never leave a fake-complete or unloadable experiment."""
    assert MODEL_CONFIGS[framework].is_file()
    rng = random.Random(f"{SEED}-{framework}")
    target = _kill_target(framework)
    trials: list[Trial] = []
    chain = 0
    while sum(t.fired for t in trials) < target:
        results = tmp_path / f"chain{chain}"
        shutil.copytree(upstream(framework), results)
        args = train_args(framework, f"{OVERRIDES[framework]} train.seed={chain}")
        if framework in TRAIN_CONFIGS:
            config = tmp_path / f"train-{framework}.yaml"
            config.write_text(TRAIN_CONFIGS[framework])
            args += ["--train-config", str(config)]
        resume_from, log_offset, finished = 0, 0, False
        for attempt in range(MAX_ATTEMPTS):
            if sum(t.fired for t in trials) >= target:
                break
            trigger = rng.choices(TRIGGERS, TRIGGER_WEIGHTS)[0]
            context = f"seed {SEED}, {framework} chain {chain} attempt {attempt} ({trigger})"
            running = start_luigi("Train", args, results, tmp_path / f"c{chain}-a{attempt}.log")
            fired = _fire(trigger, running, results, rng, resume_from)
            exp = experiment_dir(results)
            mid_write = bool(exp and temp_entries(exp))
            if exp is not None and (exp / "train.log").exists():
                text = (exp / "train.log").read_text(errors="replace")
                trained, resumed = log_events(text[log_offset:])
                log_offset = len(text)
                if resumed:
                    assert resumed == [resume_from], f"{context}: resumed from {resumed}"
                if trained:
                    assert trained[0] == resume_from + 1, f"{context}: trained {trained}"
                    if resume_from:
                        assert resumed == [resume_from], f"{context}: no resume logged"
            resume_from = _check_after_kill(exp, framework, resume_from, context)
            trials.append(
                Trial(
                    chain, attempt, trigger, fired, mid_write, committed_epochs(exp) if exp else []
                )
            )
            if not fired:
                assert running.proc.returncode == 0, running.output()
            if exp is not None and (exp / "_SUCCESS").exists():
                finished = True
                break
        if not finished:
            code, out = run_luigi_to_end("Train", args, results, tmp_path / f"c{chain}-final.log")
            assert code == 0, out
            exp = experiment_dir(results)
            assert exp is not None
            _check_complete(exp, framework, resume_from)
        assert temp_entries(results) == [], "crash leftovers survived the completing run"
        chain += 1
    fired = [t for t in trials if t.fired]
    summary = {trigger: sum(t.trigger == trigger for t in fired) for trigger in TRIGGERS}
    print(
        f"\n{framework}: {len(fired)} kills over {chain} experiments (seed {SEED}): {summary}; "
        f"{sum(t.mid_write for t in fired)} left a temporary file behind"
    )
    assert len(fired) >= target
    # The schedule must really have hit writes in progress, or the test proves little.
    assert any(t.mid_write for t in fired), "no kill landed while a file was being written"

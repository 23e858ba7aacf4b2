"""Crash leftovers: the next run removes Forge's dead temporaries — and never user files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.crashkit import (
    checkpoint_committed,
    experiment_dir,
    pausing,
    run_luigi_to_end,
    start_luigi,
    train_args,
    wait_until,
)

# A pid above the kernel's maximum (2**22) belongs to no process, now or later.
DEAD = "4194999"


@pytest.mark.slow
def test_rerun_removes_dead_temporaries_but_keeps_user_files(tmp_path: Path) -> None:
    """Temporaries of dead writers go, anywhere in the step's folders; look-alikes stay."""
    results = tmp_path / "results"
    args = train_args("torch", "train.epochs=3 train.batch_size=16")
    pause = pausing("torch", args, tmp_path, after_epoch=1, batch_size=16)
    running = start_luigi("Train", pause.args, results, tmp_path / "first.log", env=pause.env)
    assert wait_until(pause.reached, running.proc), running.output()
    assert wait_until(checkpoint_committed(results, 1), running.proc), running.output()
    running.kill()
    exp = experiment_dir(results)
    assert exp is not None
    leftovers = [
        exp / f".tmp-{DEAD}-0123abcd-metrics.csv",
        exp / "checkpoints" / f".tmp-{DEAD}-89abcdef-epoch-0002.pt",
        exp / "model" / f".tmp-{DEAD}-deadbeef-last.safetensors",
    ]
    user_files = [
        exp / "notes.txt",
        exp / ".tmp-notes.txt",  # starts like a temporary, but is not one of Forge's names
        exp / "checkpoints" / ".tmp-mine",
        exp / "checkpoints" / f".tmp-{DEAD}-not-hex-epoch.pt",
    ]
    for path in [*leftovers, *user_files]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    code, out = run_luigi_to_end(
        "Train", pause.args, results, tmp_path / "rerun.log", env=pause.plain_env
    )
    assert code == 0, out
    assert (exp / "_SUCCESS").is_file()
    assert [p for p in leftovers if p.exists()] == []
    assert [p for p in user_files if not p.exists()] == []

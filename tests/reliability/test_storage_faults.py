"""Full disk / I/O errors: a write that fails stops Train with one clear StorageError.

The fault is real: the rerun gets a file-size limit (``RLIMIT_FSIZE``) below the size of a
checkpoint but above everything else it writes, with ``SIGXFSZ`` ignored so the kernel
fails the write with ``EFBIG`` instead of killing the process — what a full disk looks
like to the writer. The previous checkpoint must survive and load, nothing may be marked
complete, and a rerun without the limit resumes from it.
"""

from __future__ import annotations

import resource
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

import tests.reliability.pause_plugins  # noqa: F401  (its model is loaded here too)
from tests.reliability.crashkit import (
    check_checkpoints_load,
    checkpoint_committed,
    committed_epochs,
    experiment_dir,
    pausing,
    run_luigi_to_end,
    start_luigi,
    temp_entries,
    tensorflow_available,
    train_args,
    wait_until,
)

EPOCHS = 5
FRAMEWORKS = [
    pytest.param("torch", id="torch"),
    pytest.param(
        "tensorflow",
        id="tensorflow",
        marks=[
            pytest.mark.tensorflow,
            pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow backend missing"),
        ],
    ),
]


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_failed_checkpoint_write_is_a_clear_storage_error(framework: str, tmp_path: Path) -> None:
    """EFBIG while writing epoch k+1's weights: StorageError, exit != 0, checkpoint k intact."""
    results = tmp_path / "results"
    pause = pausing(
        framework,
        train_args(framework, f"train.epochs={EPOCHS} train.batch_size=8"),
        tmp_path,
        after_epoch=2,
        batch_size=8,
    )
    args = pause.args
    running = start_luigi("Train", args, results, tmp_path / "first.log", env=pause.env)
    assert wait_until(pause.reached, running.proc), running.output()
    assert wait_until(checkpoint_committed(results, 2), running.proc), running.output()
    running.kill()
    exp = experiment_dir(results)
    assert exp is not None
    before = committed_epochs(exp)
    assert before and before[-1] < EPOCHS
    checkpoint = next(p for p in (exp / "checkpoints").glob("epoch-*") if p.suffix != ".json")
    weights = max(p.stat().st_size for p in (exp / "checkpoints").glob("best-*"))
    # Below both large files (whichever the next epoch writes first fails: best weights or
    # the checkpoint), far above the small records (config, run.json, metrics rows).
    limit = min(checkpoint.stat().st_size, weights) // 2
    assert limit > 16_384

    code, out = run_luigi_to_end(
        "Train",
        args,
        results,
        tmp_path / "full.log",
        env=pause.plain_env,
        preexec_fn=_file_size_limit(limit),
    )
    assert code != 0
    assert "StorageError: writing" in out, out
    assert "file size limit" in out, out
    assert "Traceback" not in out, out
    assert out.count("StorageError:") == 1, out
    assert not (exp / "_SUCCESS").exists()
    assert committed_epochs(exp) == before, "a failed write must not commit a checkpoint"
    check_checkpoints_load(exp, framework)
    assert temp_entries(exp) == [], "the failed write's temporary file must be removed"

    code, out = run_luigi_to_end(
        "Train", args, results, tmp_path / "rerun.log", env=pause.plain_env
    )
    assert code == 0, out
    assert (exp / "_SUCCESS").exists()
    assert f"resuming from checkpoint epoch-{before[-1]:04d}" in (exp / "train.log").read_text()

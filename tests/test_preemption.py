"""The stop request of :mod:`tasks.preemption`, in fresh processes (signal handlers and the
request are process-wide): the handlers outlive a request, and a request that arrives
before Train begins starts no training."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support import CONFIGS, REPO


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_second_signal_after_a_stop_request_does_not_kill_the_process(tmp_path: Path) -> None:
    proc = _python(
        """
        import os, signal
        from tasks import preemption
        with preemption.watching():
            os.kill(os.getpid(), signal.SIGTERM)
        # On the way out, as after a PreemptedError: Slurm or a shell signals again.
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGUSR1)
        print("still here", preemption.received())
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "still here SIGTERM"


def test_without_a_request_the_previous_handlers_come_back(tmp_path: Path) -> None:
    proc = _python(
        """
        import signal
        from tasks import preemption
        before = [signal.getsignal(s) for s in preemption.SIGNALS]
        with preemption.watching():
            assert [signal.getsignal(s) for s in preemption.SIGNALS] != before
        assert [signal.getsignal(s) for s in preemption.SIGNALS] == before
        print("restored")
        """,
        tmp_path,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "restored", proc.stderr


def test_a_request_before_train_begins_starts_no_training(tmp_path: Path) -> None:
    """A signal during data preparation: the upstream steps finish (they are not
    resumable mid-way), and Train stops before its first batch."""
    proc = _python(
        f"""
        import luigi
        from tasks import preemption
        from tasks.train import Train
        preemption._received.append("SIGTERM")  # what the handler records
        task = Train(
            data_config="{CONFIGS / "data" / "moons.yaml"}",
            model_config="{CONFIGS / "model" / "mlp_torch.yaml"}",
            train_config="{CONFIGS / "train" / "quick.yaml"}",
            results_dir="{tmp_path / "results"}",
        )
        result = luigi.build([task], local_scheduler=True, detailed_summary=True,
                             log_level="WARNING")
        print("complete" if task.complete() else "incomplete")
        """,
        tmp_path,
    )
    assert proc.stdout.strip().splitlines()[-1] == "incomplete", proc.stdout + proc.stderr
    assert "before training began" in proc.stderr, proc.stderr[-3000:]
    assert not list((tmp_path / "results").rglob("metrics.csv")), "an epoch was trained"

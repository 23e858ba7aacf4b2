"""No-op rerun: ``luigi --module pipelines Evaluate ...`` on a finished experiment.

A real (tiny) experiment is trained once through the ``luigi`` command; then the same
command, which now has nothing to do, is timed against ``python -c "import luigi"``, each
in a fresh process. A wrapper running Luigi's own entry point checks afterwards that the
no-op never imported torch, TensorFlow or Keras.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._configs import REPO, luigi_command, subprocess_env, write_configs
from benchmarks.harness import Target, interleaved, row

__all__ = ["run"]

TARGET = Target("<=", 0.5, on="candidate", unit=" s")
FRAMEWORKS = ("torch", "tensorflow", "keras")
_MARK = "FORGE-BENCH-MODULES "
_WRAPPER = (
    "import json, sys\n"
    "import luigi.cmdline\n"
    "code = 0\n"
    "try:\n"
    "    luigi.cmdline.luigi_run(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    f"loaded = sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)\n"
    f"print({_MARK!r} + json.dumps({{'code': code, 'loaded': loaded}}), flush=True)\n"
)


def _args(configs: dict[str, Path], results: Path) -> list[str]:
    return [
        "--module",
        "pipelines",
        "Evaluate",
        "--data-config",
        str(configs["data"]),
        "--model-config",
        str(configs["model"]),
        "--train-config",
        str(configs["train"]),
        "--eval-config",
        str(configs["eval"]),
        "--results-dir",
        str(results),
        "--local-scheduler",
    ]


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:4]} exited {proc.returncode}: {proc.stderr[-800:]}")
    return elapsed


def run(quick: bool) -> list[dict[str, Any]]:
    """Train once, then time the no-op rerun; two rows (time, framework imports)."""
    repeats = 3 if quick else 11
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        configs = write_configs(Path(tmp) / "configs")
        args = _args(configs, Path(tmp) / "results")
        _wall([*luigi_command(), *args])  # the real run that finishes the experiment
        cand, base = interleaved(
            lambda: _wall([*luigi_command(), *args]),
            lambda: _wall([sys.executable, "-c", "import luigi"]),
            repeats,
        )
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *args],
            cwd=REPO,
            env=subprocess_env(),
            capture_output=True,
            text=True,
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
    report = (
        json.loads(lines[-1][len(_MARK) :]) if lines else {"code": proc.returncode, "loaded": None}
    )
    ran = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ") running " in ln]
    loaded = report["loaded"]
    clean = report["code"] == 0 and report["loaded"] == [] and not ran
    timing = row(
        "no-op rerun, Evaluate",
        "wall s",
        cand,
        base,
        TARGET,
        note="fresh `luigi --module pipelines Evaluate ...` process on a finished experiment vs "
        "`python -c 'import luigi'`; target is the absolute time",
    )
    imports = {
        "name": "no-op rerun, imports",
        "metric": "framework modules loaded",
        "status": "ok",
        "candidate_median": None if loaded is None else float(len(loaded)),
        "baseline_median": 0.0,
        "spread": None,
        "ratio": None,
        "target": "none of torch/tensorflow/keras",
        "met": clean,
        "repeats": 1,
        "note": f"exit code {report['code']}, loaded {report['loaded']}, tasks run: {len(ran)}",
    }
    return [timing, imports]

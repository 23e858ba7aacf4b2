"""How Forge's Sweep scales with the number of experiments, against plain Luigi.

Three measurements, each in a fresh subprocess through ``luigi.build``:

* ``plain``: a plain-Luigi sweep of N 4-task chains (A → B → C → D, each writing a
  marker) — the cost of scheduling one Luigi task per step.
* ``forge_plan``: a Forge ``Sweep`` over N experiments that are all complete on disk but
  whose sweep is not (its marker is removed): expanding and resolving N experiments,
  scheduling the shards, checking every experiment and writing the summary. The
  experiment directories are laid out with the real resolution code and marked complete
  without training, so N can be 1000 on a laptop.
* ``forge_run``: a real Forge sweep of trivial experiments (the ``bench_rows`` dataset and
  ``bench_linear`` model of :mod:`benchmarks.sweep_plugin`), where framework time is the
  wall time minus the time spent inside the steps' ``run`` (recorded by the shards); its
  baseline is the whole per-experiment wall time, steps included.

Times are taken inside each subprocess around ``luigi.build``, so interpreter start-up and
imports (paid once per command) are left out of every number.

``run(quick)`` returns rows built with :func:`benchmarks.harness.row` for the benchmark
runner; ``python -m benchmarks.sweep_scaling [--quick]`` prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Target, row

__all__ = ["run"]

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "benchmarks.sweep_plugin"
TARGET_MS_PER_EXPERIMENT = 10.0
TARGET_GROWTH = 12.0

_PLAIN = """
import sys, time, luigi
class Step(luigi.Task):
    i = luigi.IntParameter()
    level = luigi.IntParameter()
    root = luigi.Parameter()
    def requires(self):
        return Step(i=self.i, level=self.level - 1, root=self.root) if self.level else []
    def output(self):
        return luigi.LocalTarget(f"{self.root}/{self.i}-{self.level}")
    def run(self):
        with self.output().open("w") as fh:
            fh.write("")
class All(luigi.WrapperTask):
    n = luigi.IntParameter()
    root = luigi.Parameter()
    def requires(self):
        return [Step(i=i, level=3, root=self.root) for i in range(self.n)]
started = time.perf_counter()
ok = luigi.build([All(n=int(sys.argv[1]), root=sys.argv[2])], local_scheduler=True,
                 log_level="WARNING")
print("ELAPSED", time.perf_counter() - started)
sys.exit(0 if ok else 1)
"""

_FORGE = """
import sys, time, luigi
from tasks.sweep import Sweep
started = time.perf_counter()
ok = luigi.build([Sweep(sweep_config=sys.argv[1], results_dir=sys.argv[2])],
                 local_scheduler=True, log_level="WARNING")
print("ELAPSED", time.perf_counter() - started)
sys.exit(0 if ok else 1)
"""

_LAYOUT = """
import json, sys
from pathlib import Path
from tasks.sweep import load_plan
plan = load_plan(sys.argv[1], Path(sys.argv[2]))
for spec in plan.specs:
    for level in ("data", "model", "train", "eval"):
        d = spec.dirs[level]
        d.mkdir(parents=True, exist_ok=True)
        (d / ".digest").write_text(spec[level].digest + "\\n")
        (d / "_SUCCESS").write_text("")
    (spec.dirs["eval"] / "metrics.json").write_text(
        json.dumps({"split": "test", "metrics": {"accuracy": 1.0}}))
print(len(plan.specs))
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "FORGE_PLUGINS": PLUGIN}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _timed(code: str, *args: str, cwd: Path) -> float:
    """Run ``code`` in a fresh interpreter; the seconds it reports (``ELAPSED s``) or took.

    Scripts that time themselves exclude interpreter start-up and imports, which are
    paid once per command whatever the sweep's size.
    """
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("ELAPSED "):
            return float(line.split()[1])
    return time.perf_counter() - started


def _write_sweep(folder: Path, n: int) -> Path:
    files = {
        "data.yaml": "loader: bench_rows\nparams: {n: 40}\n",
        "model.yaml": "framework: torch\nbuilder: bench_linear\n",
        "train.yaml": "epochs: 1\ndevice: cpu\n",
        "eval.yaml": "metrics: [accuracy]\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    sweep = folder / "sweep.yaml"
    sweep.write_text(
        textwrap.dedent(
            f"""\
            data: [data.yaml]
            model: [model.yaml]
            train: [train.yaml]
            eval: [eval.yaml]
            grid: {{train.seed: {list(range(n))}}}
            """
        )
    )
    return sweep


def plain_seconds(n: int) -> float:
    """Wall seconds of plain Luigi running ``n`` trivial 4-task chains."""
    with tempfile.TemporaryDirectory() as tmp:
        return _timed(_PLAIN, str(n), tmp, cwd=Path(tmp))


def forge_plan_seconds(n: int) -> float:
    """Wall seconds of a Forge sweep of ``n`` complete experiments whose sweep must rerun."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sweep = _write_sweep(folder, n)
        _timed(_LAYOUT, str(sweep), "results", cwd=folder)
        return _timed(_FORGE, str(sweep), "results", cwd=folder)


def forge_run_seconds(n: int) -> tuple[float, float]:
    """(wall seconds, seconds inside step bodies) of a real sweep of ``n`` trivial experiments."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sweep = _write_sweep(folder, n)
        wall = _timed(_FORGE, str(sweep), "results", cwd=folder)
        steps = sum(
            json.loads(p.read_text())["step_seconds"]
            for p in (folder / "results" / "sweeps").glob("*/shards/*.json")
        )
        return wall, steps


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure and return benchmark rows (one sample per side; see the module docstring).

    ``quick`` uses 50 / 500 experiments and 10 real ones (about a minute); otherwise
    100 / 1000 and 50 real ones (a few minutes, most of it plain Luigi at 1000).
    """
    small, large = (50, 500) if quick else (100, 1000)
    real = 10 if quick else 50
    plain = {n: plain_seconds(n) for n in (small, large)}
    forge = {n: forge_plan_seconds(n) for n in (small, large)}
    wall, steps = forge_run_seconds(real)
    framework_ms = 1000.0 * max(wall - steps, 0.0) / real
    rows = [
        row(
            f"sweep_ms_per_experiment_n{n}",
            "ms per experiment (plan + schedule + check + summary)",
            [1000.0 * forge[n] / n],
            [1000.0 * plain[n] / n],
            Target("<=", TARGET_MS_PER_EXPERIMENT, on="candidate", unit=" ms"),
            note="baseline: plain Luigi, 4-task chain per experiment",
        )
        for n in (small, large)
    ]
    rows.append(
        row(
            f"sweep_growth_n{large}_over_n{small}",
            f"t({large}) / t({small})",
            [forge[large] / forge[small]],
            [plain[large] / plain[small]],
            Target("<=", TARGET_GROWTH, on="candidate"),
            note="baseline: the same growth for plain Luigi",
        )
    )
    rows.append(
        row(
            f"sweep_run_framework_ms_per_experiment_n{real}",
            "ms per experiment outside the steps (real trivial experiments)",
            [framework_ms],
            [1000.0 * wall / real],
            Target("<=", TARGET_MS_PER_EXPERIMENT, on="candidate", unit=" ms"),
            note="baseline: whole wall time per experiment, steps included",
        )
    )
    return rows


def main() -> None:
    """Print the rows as a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    args = parser.parse_args()
    for result in run(args.quick):
        print(
            f"{result['name']:<44} candidate={result['candidate_median']:<10.4g} "
            f"baseline={result['baseline_median']:<10.4g} ratio={result['ratio']:<8.4g} "
            f"target={result['target']} met={result['met']}"
        )


if __name__ == "__main__":
    main()

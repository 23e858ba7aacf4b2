"""``forge ls`` over N synthetic experiments vs reading N small files.

N finished experiments are synthesized with the files a real run leaves (``.digest``,
``config.yaml``, ``run.json``, ``metrics.csv``, ``model/best.json``, ``_SUCCESS`` and one
evaluation), spread over 10 data x 10 model folders with a swept ``train.epochs`` and
``train.optimizer.lr``. The candidate is the ``forge ls`` console script in a fresh
process over an up-to-date index (the everyday case: after tasks updated it); the
baseline is a fresh Python process that reads one small file (``run.json``) of each
experiment, i.e. the cheapest listing that looks into every experiment. The one-off
index rebuild (``forge ls --rebuild``) is reported as a second row.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._configs import subprocess_env
from benchmarks.harness import Target, interleaved, row

__all__ = ["run", "synthesize"]

TARGET = Target("<=", 1.0, on="candidate", unit=" s")

_CONFIG = """data:
  name: null
  loader: blobs
  params: {{n_samples: 300, centers: 3, n_features: 4, seed: {d}}}
  split: {{val: 0.1, test: 0.2, seed: 0}}
model:
  name: null
  framework: torch
  builder: mlp
  params: {{activation: relu, dropout: 0.1, hidden: [{h}, 32]}}
  objective: null
  seed: 0
train:
  name: null
  epochs: {e}
  batch_size: 64
  optimizer: {{name: adam, lr: {lr}, weight_decay: 0.0, momentum: 0.0}}
  loss: cross_entropy
  seed: 0
  checkpoint_every: 1
  device: auto
  monitor: val_loss
  mode: min
  shuffle: true
"""


_EVAL = "split: test\ncheckpoint: best\nmetrics: [accuracy, loss]\n"


def _folder(parent: Path, stem: str, content: str) -> Path:
    """A finished step folder named as Forge names it: ``<stem>-<digest[:8]>`` holding the
    full digest (here of ``content``) and the marker."""
    digest = hashlib.sha256(content.encode()).hexdigest()
    folder = parent / f"{stem}-{digest[:8]}"
    folder.mkdir(parents=True)
    (folder / ".digest").write_text(digest)
    (folder / "_SUCCESS").write_text("")
    return folder


def synthesize(results: Path, n: int) -> None:
    """Write ``n`` finished experiments under ``results`` (10 data x 10 model folders)."""
    per_model = max(1, n // 100)
    made = 0
    for d in range(10):
        data = _folder(results, "blobs", f"data {d}")
        for m in range(10):
            model = _folder(data, "mlp_torch", f"model {d} {m}")
            for t in range(per_model):
                if made == n:
                    return
                exp = _folder(model, "default", f"train {d} {m} {t}")
                evaluation = _folder(exp / "eval", "default", f"eval {d} {m} {t}")
                (exp / "model").mkdir(parents=True)
                (evaluation / "eval.yaml").write_text(_EVAL)
                epochs, lr = 1 + t % 5, 0.001 * (1 + t // 5)
                (exp / "config.yaml").write_text(
                    _CONFIG.format(d=d, h=16 * (m + 1), e=epochs, lr=lr)
                )
                run = {
                    "status": "done",
                    "start": "2026-01-01T00:00:00+00:00",
                    "duration_s": 1.0,
                    "framework": "torch",
                    "host": "bench",
                    "code": {},
                    "git": {"commit": None, "dirty": None},
                }
                (exp / "run.json").write_text(json.dumps(run))
                rows = "".join(f"{i},0.5,0.8,{0.6 - i / 100},0.7\n" for i in range(1, epochs + 1))
                (exp / "metrics.csv").write_text(
                    "epoch,loss,accuracy,val_loss,val_accuracy\n" + rows
                )
                best = {"epoch": epochs, "monitor": "val_loss", "mode": "min", "value": 0.5}
                (exp / "model" / "best.json").write_text(json.dumps(best))
                metrics = {
                    "split": "test",
                    "checkpoint": "best",
                    "rows": 60,
                    "metrics": {"accuracy": 0.9, "loss": 0.3},
                }
                (evaluation / "metrics.json").write_text(json.dumps(metrics))
                made += 1


def _forge(results: Path, *extra: str) -> float:
    command = [str(Path(sys.executable).with_name("forge")), "ls", str(results), *extra]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=subprocess_env())
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"forge ls failed: {proc.stderr[-2000:]}")
    return elapsed


_READ_ALL = (
    "import sys, pathlib\n"
    "for p in pathlib.Path(sys.argv[1]).glob('*/*/*/run.json'):\n"
    "    p.read_bytes()\n"
)


def _read_files(results: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _READ_ALL, str(results)], check=True)
    return time.perf_counter() - start


def run(quick: bool) -> list[dict[str, Any]]:
    """Synthesize N experiments, then time ``forge ls`` (warm index and rebuild)."""
    n, repeats = (1000, 3) if quick else (10_000, 5)
    with tempfile.TemporaryDirectory(prefix="forge-bench-ls-") as tmp:
        results = Path(tmp) / "results"
        synthesize(results, n)
        rebuild = [_forge(results, "--rebuild")]
        cand, base = interleaved(lambda: _forge(results), lambda: _read_files(results), repeats)
    return [
        row(
            f"forge ls, N={n}",
            "wall s",
            cand,
            base,
            TARGET,
            note="fresh `forge ls` process over an up-to-date index vs a fresh Python "
            "process reading one small file per experiment",
        ),
        row(
            f"forge ls --rebuild, N={n}",
            "wall s",
            rebuild,
            base,
            Target(">=", 0.0, on="candidate", unit=" s"),
            note="one-off: reads every experiment folder and writes the index",
        ),
    ]

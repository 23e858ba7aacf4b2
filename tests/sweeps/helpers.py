"""Helpers shared by the sweep tests: tiny sweep files and reading run records."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import CONFIGS, write_yaml

DATA = CONFIGS / "data" / "moons.yaml"
TORCH = CONFIGS / "model" / "mlp_torch.yaml"
TF = CONFIGS / "model" / "mlp_tf.yaml"


def tiny_sweep(folder: Path, grid: str, models: tuple[Path, ...] = (TORCH,)) -> Path:
    """A sweep over moons with one-epoch training, varying ``grid`` (a YAML flow mapping)."""
    train = write_yaml(folder / "train.yaml", "epochs: 1\nbatch_size: 128\ndevice: cpu\n")
    model_list = ", ".join(str(m) for m in models)
    return write_yaml(
        folder / "sweep.yaml",
        f"data: [{DATA}]\nmodel: [{model_list}]\ntrain: [{train}]\ngrid: {grid}\n",
    )


def attempts(results_dir: Path) -> dict[str, list[dict[str, object]]]:
    """Per experiment directory, the training attempts recorded in ``runs.jsonl``."""
    out = {}
    for log in sorted(results_dir.glob("*/*/*/runs.jsonl")):
        lines = [json.loads(line) for line in log.read_text().splitlines() if line]
        out[str(log.parent.relative_to(results_dir))] = lines
    return out


def evaluated(results_dir: Path) -> set[str]:
    """Experiment directories whose Evaluate finished."""
    return {
        str(p.parent.parent.parent.relative_to(results_dir))
        for p in results_dir.glob("*/*/*/eval/*/_SUCCESS")
    }


def summary_rows(results_dir: Path) -> list[dict[str, object]]:
    """The rows of the (single) sweep summary under ``results_dir``."""
    (summary,) = (results_dir / "sweeps").glob("*/summary.json")
    return list(json.loads(summary.read_text())["experiments"])

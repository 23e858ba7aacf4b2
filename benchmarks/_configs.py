"""Tiny configs for benchmarks that run (or synthesize) whole experiments."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["REPO", "luigi_command", "subprocess_env", "write_configs"]

REPO = Path(__file__).resolve().parents[1]


def write_configs(directory: Path) -> dict[str, Path]:
    """Data (blobs, 300 rows), model (torch linear), train (1 epoch) and eval configs."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = {
        "data": "loader: blobs\nparams: {n_samples: 300, centers: 3, n_features: 4, seed: 0}\n",
        "model": "framework: torch\nbuilder: linear\nparams: {}\n",
        "train": "epochs: 1\nbatch_size: 64\n",
        "eval": "split: test\nmetrics: [accuracy]\n",
    }
    paths = {}
    for level, text in texts.items():
        paths[level] = directory / f"bench_{level}.yaml"
        paths[level].write_text(text)
    return paths


def luigi_command() -> list[str]:
    """The ``luigi`` console script of this Python."""
    script = Path(sys.executable).with_name("luigi")
    return [str(script)] if script.exists() else [sys.executable, "-m", "luigi"]


def subprocess_env() -> dict[str, str]:
    """The environment with the repository first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env

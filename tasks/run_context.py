"""What Train records once training succeeded, besides the model: the environment
(``environment.txt`` + run.json's ``environment``) and the TensorBoard HParams summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.backends import get_backend
from tasks.environment import capture_environment
from tasks.hparams import write_hparams
from tasks.store.names import METRICS_FILE, TENSORBOARD_DIR

__all__ = ["record_run_context"]


def record_run_context(directory: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Capture the environment and write the HParams summary of the experiment ``directory``.

    Args:
        directory: the experiment folder (training has just finished in it).
        config: the resolved config (``{"data": …, "model": …, "train": …}``).

    Returns:
        run.json's ``environment`` section.
    """
    backend = get_backend(config["model"]["framework"])
    environment = capture_environment(directory, backend)
    write_hparams(directory, directory / TENSORBOARD_DIR, config, directory / METRICS_FILE)
    return environment

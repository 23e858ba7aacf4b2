"""What the two train-loop benchmarks share: the workload and Forge's side of it.

Both time the shared loop (``tasks.loop.fit_epochs``) fed by a :class:`BatchStream` from a real
``data.h5`` against the framework's own minimal loop over the same rows in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.harness import timed

if TYPE_CHECKING:
    from tasks.backends.base import Backend, TrainSettings
    from tasks.data.h5store import DataMeta

__all__ = [
    "BATCH",
    "OPTIMIZER",
    "PARAMS",
    "ROWS",
    "forge_fit_seconds",
    "hand_adam",
    "settings_for",
]

ROWS = 20_000
BATCH = 128
PARAMS = {"hidden": [256, 256], "dropout": 0.0}
OPTIMIZER = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.0}


def settings_for(meta: DataMeta, epochs: int) -> TrainSettings:
    """Train settings of the workload: Adam, cross-entropy, seed 0, CPU."""
    from tasks.backends.base import TrainSettings

    return TrainSettings(
        epochs=epochs,
        batch_size=BATCH,
        optimizer=OPTIMIZER,
        loss="cross_entropy",
        seed=0,
        device="cpu",
        objective=None,
        meta=meta,
    )


def hand_adam(params: Any) -> Any:
    """The hand-written loops' Adam, with the kernel Forge's ``adam`` picks (fused where
    the parameters allow it): these rows measure the loop around the optimizer, not the
    optimizer's kernel. (The sweep row compares with plain ``torch.optim.Adam``, as a
    researcher's own script would use.)"""
    import torch

    from tasks.backends.torch_optimizers import fused_kernel

    params = list(params)
    return torch.optim.Adam(params, lr=OPTIMIZER["lr"], fused=fused_kernel(params) or None)


def forge_fit_seconds(backend: Backend, model: Any, path: Path, settings: TrainSettings) -> float:
    """Seconds for Forge's session to train ``model`` from a freshly opened stream."""
    from tasks.data.h5store import BatchStream, clear_read_memos
    from tasks.loop import fit_epochs

    def work() -> None:
        clear_read_memos()  # a fresh process reads data.h5 once; so does each repetition
        stream = BatchStream(path, "train", BATCH, shuffle=True, seed=0)
        fit_epochs(backend.session(model, settings), stream, None, 0, lambda epoch, logs: None)

    return timed(work)

"""An objective must return a mapping with a ``loss`` entry, in the torch training loop too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.backends import get_backend
from tasks.backends.base import TrainSettings, checked_objective_result
from tasks.data.h5store import BatchStream, write_splits
from tasks.errors import ConfigError
from tasks.loop import fit_epochs
from tasks.registry import Entry, get_entry


def _elbo_only(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    return {"elbo": model(batch["x"]).sum()}


BAD = Entry(kind="objective", name="elbo_only", framework="torch", func=_elbo_only)


def test_checked_result_names_the_objective() -> None:
    with pytest.raises(ConfigError, match="'elbo_only' .*must return a dict with a 'loss' entry"):
        checked_objective_result(BAD, {"elbo": 1.0})
    assert checked_objective_result(BAD, {"loss": 2.0}) == {"loss": 2.0}


def test_torch_training_rejects_an_objective_without_loss(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {"x": rng.normal(size=(60, 3)).astype(np.float32)}
    meta = write_splits(tmp_path / "d.h5", arrays, {"val": 0.0, "test": 0.0, "seed": 0}, {}, "t")
    backend = get_backend("torch")
    model = backend.build(get_entry("model", "linear", "torch"), {}, meta, seed=0)
    settings = TrainSettings(
        epochs=1,
        batch_size=16,
        optimizer={"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.0},
        loss="mse",
        seed=0,
        device="cpu",
        objective=BAD,
        meta=meta,
    )
    session = backend.session(model, settings)
    with pytest.raises(ConfigError, match="must return a dict with a 'loss' entry"):
        fit_epochs(
            session, BatchStream(tmp_path / "d.h5", "train", 16), None, 0, lambda e, logs: None
        )

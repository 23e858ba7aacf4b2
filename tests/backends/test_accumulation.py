"""Gradient accumulation in both frameworks: batch_size 32 × accumulate 2 trains the same
weights as batch_size 64 (SGD, no shuffle, no dropout), to float tolerance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.backends.base import TrainSettings
from tasks.data.h5store import BatchStream, DataMeta, read_meta, write_splits
from tasks.loop import fit_epochs
from tasks.registry import get_entry
from tests.support import FRAMEWORKS


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 training rows: batches of 64 are 64, 64, 22 — the last group is short."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=250).astype(np.int64)
    x = (rng.normal(size=(250, 4)) + y[:, None]).astype(np.float32)
    path = tmp_path_factory.mktemp("accumulate") / "data.h5"
    write_splits(path, {"x": x, "y": y}, {"val": 0.2, "test": 0.2, "seed": 0}, {}, "test data")
    return path


def _train(framework: str, meta: DataMeta, path: Path, batch: int, accumulate: int) -> list:
    from tasks.backends import get_backend

    backend = get_backend(framework)
    entry = get_entry("model", "mlp", framework)
    model = backend.build(entry, {"hidden": [16], "dropout": 0.0}, meta, seed=0)
    settings = TrainSettings(
        epochs=2, batch_size=batch, optimizer={"name": "sgd", "lr": 0.1}, loss="cross_entropy",
        seed=0, device="cpu", objective=None, meta=meta, accumulate=accumulate,
    )  # fmt: skip
    session = backend.session(model, settings)
    stream = BatchStream(path, "train", batch, shuffle=False)
    fit_epochs(session, stream, None, 0, lambda epoch, logs: None)
    return _weights(framework, session.model)


def _weights(framework: str, model: Any) -> list[np.ndarray]:
    if framework == "torch":
        return [p.detach().numpy().copy() for p in model.parameters()]
    return [np.asarray(w) for w in model.get_weights()]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_accumulate_two_batches_of_32_equals_one_of_64(framework: str, data_file: Path) -> None:
    meta = read_meta(data_file)
    whole = _train(framework, meta, data_file, 64, 1)
    grouped = _train(framework, meta, data_file, 32, 2)
    for a, b in zip(whole, grouped, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The control: the same batches without accumulation give other weights.
    single = _train(framework, meta, data_file, 32, 1)
    assert any(not np.allclose(a, b, rtol=1e-3) for a, b in zip(whole, single, strict=True))

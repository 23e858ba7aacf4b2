"""Objectives inside the backends: training mode reaches the model, and config identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.backends.base import TrainSettings
from tasks.config.resolve import resolve_section
from tasks.data.h5store import BatchStream, read_meta, write_splits
from tasks.loop import fit_epochs
from tasks.registry import get_entry, register_objective
from tests.support import CONFIGS, write_yaml


@register_objective("dropout_probe", framework="tensorflow")
def dropout_probe(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """Squared error to 1, and the share of inputs the first (dropout) layer zeroes."""
    from keras import ops

    dropped = ops.mean(ops.cast(ops.equal(model.layers[0](batch["x"]), 0.0), "float32"))
    return {"loss": ops.mean(ops.square(model(batch["x"]) - 1.0)), "dropped": dropped}


@pytest.mark.tensorflow
def test_tensorflow_objective_trains_in_training_mode(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    import keras

    from tasks.backends import get_backend

    keras.utils.set_random_seed(0)  # the initial weights: the same draw every run
    path = tmp_path / "data.h5"
    x = np.ones((200, 16), dtype=np.float32)
    write_splits(path, {"x": x}, {"val": 0.2, "test": 0.2, "seed": 0}, {}, "test data")
    meta = read_meta(path)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dropout(0.5), keras.layers.Dense(1)])
    settings = TrainSettings(
        epochs=3, batch_size=32, optimizer={"name": "adam", "lr": 0.05, "weight_decay": 0.0},
        loss="mse", seed=0, device="cpu", objective=get_entry(
            "objective", "dropout_probe", "tensorflow"
        ), meta=meta,
    )  # fmt: skip
    logs: list[dict[str, float]] = []
    before = [w.copy() for w in model.get_weights()]
    session = get_backend("tensorflow").session(model, settings)
    fit_epochs(
        session,
        BatchStream(path, "train", 32, shuffle=True, seed=0),
        BatchStream(path, "val", 32, shuffle=False),
        0,
        lambda epoch, values: logs.append(values),
    )
    assert len(logs) == 3 and set(logs[0]) == {"loss", "dropped", "val_loss", "val_dropped"}
    # Training calls see dropout active, validation calls do not.
    assert all(0.35 < row["dropped"] < 0.65 for row in logs), logs
    assert all(row["val_dropped"] == 0.0 for row in logs), logs
    # The objective's loss was minimised: the weights moved. (Whether the last epoch's
    # validation loss beats the first's depends on the draw: under dropout noise at this
    # rate it wanders once near its minimum, so that is not asserted.)
    after = model.get_weights()
    assert any(not np.allclose(b, a) for b, a in zip(before, after, strict=True))


def test_default_inputs_keep_the_model_identity(tmp_path: Path) -> None:
    base = (CONFIGS / "model" / "mlp_torch.yaml").read_text()
    plain = resolve_section("model", CONFIGS / "model" / "mlp_torch.yaml")
    explicit = resolve_section("model", write_yaml(tmp_path / "a.yaml", base + "inputs: [x]\n"))
    other = resolve_section("model", write_yaml(tmp_path / "b.yaml", base + "inputs: [image]\n"))
    assert plain.config["inputs"] is None
    assert explicit.digest == plain.digest
    assert other.digest != plain.digest

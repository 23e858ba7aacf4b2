"""Synthetic classification data written as a real ``data.h5`` by Forge's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.data.h5store import DataMeta, write_splits

__all__ = ["make_arrays", "write_data_h5"]


def make_arrays(
    rows: int, features: int = 64, classes: int = 2, seed: int = 0
) -> dict[str, np.ndarray]:
    """Linearly separable-ish float32 features and int64 labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features), dtype=np.float32)
    w = rng.standard_normal((features, classes), dtype=np.float32)
    y = np.argmax(x @ w, axis=1).astype(np.int64)
    return {"x": x, "y": y}


def write_data_h5(path: Path, arrays: dict[str, np.ndarray]) -> DataMeta:
    """Write every row to the ``train`` split of ``path`` with :func:`write_splits`."""
    return write_splits(
        path,
        arrays,
        {"val": 0.0, "test": 0.0, "seed": 0},
        {"config_digest": "bench"},
        where="bench",
    )

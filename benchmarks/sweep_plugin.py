"""A dataset and a model that do (almost) no work, for measuring Forge's own overhead.

Loaded by the sweep benchmark through ``FORGE_PLUGINS=benchmarks.sweep_plugin``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.registry import register_dataset, register_model

__all__ = ["bench_rows", "bench_linear"]


@register_dataset("bench_rows")
def bench_rows(n: int = 40, seed: int = 0) -> dict[str, Any]:
    """``n`` random 2-feature rows in 2 classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    return {"x": x, "y": (x[:, 0] > 0).astype(np.int64)}


@register_model("bench_linear", framework="torch")
def bench_linear(input_shape: tuple[int, ...], num_classes: int | None, meta: Any = None) -> Any:
    """One linear layer."""
    import torch.nn as nn

    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), num_classes or 1))

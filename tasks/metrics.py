"""Built-in evaluation metrics over numpy arrays (framework-agnostic).

A metric is ``(outputs, batch) -> float`` where ``outputs`` is what the model returned for
the whole split and ``batch`` the split's arrays. ``loss`` is special: it is the train
config's loss, computed by the model's framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.outputs import primary_output
from tasks.registry import register_metric

if TYPE_CHECKING:
    import numpy as np

__all__ = ["LOSS_METRIC", "accuracy", "mae", "mse"]

LOSS_METRIC = "loss"


@register_metric("accuracy")
def accuracy(outputs: Any, batch: dict[str, np.ndarray]) -> float:
    """Share of rows whose arg-max output equals the label ``y``."""
    import numpy as np

    pred = np.asarray(primary_output(outputs))
    return float(np.mean(np.argmax(pred, axis=-1) == batch["y"]))


@register_metric("mse")
def mse(outputs: Any, batch: dict[str, np.ndarray]) -> float:
    """Mean squared error of the outputs against ``y``."""
    import numpy as np

    pred = np.asarray(primary_output(outputs)).reshape(batch["y"].shape)
    return float(np.mean((pred - batch["y"]) ** 2))


@register_metric("mae")
def mae(outputs: Any, batch: dict[str, np.ndarray]) -> float:
    """Mean absolute error of the outputs against ``y``."""
    import numpy as np

    pred = np.asarray(primary_output(outputs)).reshape(batch["y"].shape)
    return float(np.mean(np.abs(pred - batch["y"])))


@register_metric(LOSS_METRIC)
def loss(outputs: Any, batch: dict[str, np.ndarray]) -> float:  # pragma: no cover
    """Placeholder: Evaluate computes the loss with the model's framework."""
    raise NotImplementedError

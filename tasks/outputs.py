"""Model outputs of any structure — one array, a tuple or a dict — handled alike.

Models may return a tensor, a tuple or a dict of named outputs; prediction, metrics,
Evaluate and LoadTrained all treat the first output as the "primary" one (what
``accuracy`` scores) and keep the structure otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["concat_outputs", "named_outputs", "primary_output"]


def primary_output(outputs: Any) -> Any:
    """The first output: a dict's first value, a tuple's first item, else ``outputs``."""
    if isinstance(outputs, dict):
        return next(iter(outputs.values()))
    if isinstance(outputs, tuple | list):
        return outputs[0]
    return outputs


def named_outputs(outputs: Any) -> dict[str, np.ndarray]:
    """Outputs as ``{name: array}``: a dict's keys, ``output_<i>`` for tuples, else ``output``."""
    import numpy as np

    if isinstance(outputs, dict):
        return {str(k): np.asarray(v) for k, v in outputs.items()}
    if isinstance(outputs, tuple | list):
        return {f"output_{i}": np.asarray(v) for i, v in enumerate(outputs)}
    return {"output": np.asarray(outputs)}


def concat_outputs(chunks: list[Any]) -> Any:
    """Join per-batch outputs (numpy) along the batch axis, keeping their structure."""
    import numpy as np

    if not chunks:
        return np.zeros((0,))
    first = chunks[0]
    if isinstance(first, dict):
        return {k: np.concatenate([np.asarray(c[k]) for c in chunks]) for k in first}
    if isinstance(first, tuple | list):
        return tuple(np.concatenate([np.asarray(c[i]) for c in chunks]) for i in range(len(first)))
    return np.concatenate([np.asarray(c) for c in chunks])

"""Which dtype each array is stored with, decided once at PrepareData.

Users' files come in every numeric dtype: ``np.savez`` writes float64 by default, images are
uint8, labels int8 or bool. The frameworks want one thing: float32 inputs and int64 class
labels. PrepareData casts once, here, so every later step (both backends, Evaluate,
LoadTrained) sees the same dtypes, and records the source and stored dtype of every array
in ``meta.json``. What cannot be trained on at all is one :class:`DataError`, raised before
anything is written.

Rules:

- every array except ``y`` (features, extra inputs): float, integer or bool → ``float32``;
- ``y`` of integer or bool dtype: class labels ``0..K-1``, one per row → ``int64``, with
  ``K`` at most :data:`MAX_CLASSES` and at most the number of rows;
- ``y`` of float dtype: regression targets → ``float32``, any shape;
- complex, object, string, date and structured arrays are refused, as are 1-D or zero-width
  ``x`` and 2-D integer labels (one-hot labels: store ``y.argmax(axis=1)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.errors import DataError

__all__ = ["FEATURE_DTYPE", "LABEL_DTYPE", "MAX_CLASSES", "StoragePlan", "plan_storage"]

FEATURE_DTYPE = "float32"
LABEL_DTYPE = "int64"
MAX_CLASSES = 100_000
_LABELS = "y"


@dataclass(frozen=True)
class StoragePlan:
    """Source and stored dtype of every array, in the loader's order."""

    source: dict[str, str]
    stored: dict[str, str]

    def record(self) -> dict[str, dict[str, str]]:
        """``{name: {"source": dtype, "stored": dtype}}``, as written to ``meta.json``."""
        return {k: {"source": self.source[k], "stored": self.stored[k]} for k in self.stored}


def _refuse_kind(name: str, dtype: Any, where: str) -> None:
    kind = dtype.kind
    if kind in "fiub":
        return
    if kind == "c":
        fix = "store the real and imaginary parts as two real features (or their magnitude)"
    elif kind in "OUS":
        fix = "convert it to numbers before saving, e.g. np.asarray(values, dtype=float)"
    elif kind in "mM":
        fix = "convert dates and durations to numbers (e.g. seconds) before saving"
    else:
        fix = "store each field as its own numeric array"
    raise DataError(
        f"{where}: array {name!r} has dtype {dtype}, which cannot be trained on; "
        f"only float, integer and bool arrays can. Fix: {fix}"
    )


def _check_shape(name: str, shape: tuple[int, ...], where: str) -> None:
    if len(shape) == 0:
        raise DataError(f"{where}: array {name!r} is a scalar; it needs a row axis")
    if name == "x" and len(shape) == 1:
        raise DataError(
            f"{where}: array 'x' has shape {shape}, one value per row without a feature axis; "
            "store x.reshape(-1, 1) for a single feature"
        )
    if any(int(d) == 0 for d in shape[1:]):
        raise DataError(
            f"{where}: array {name!r} has shape {shape}: zero-width rows carry no values; "
            "every row needs at least one feature"
        )


def _check_labels(y: Any, where: str) -> None:
    """Integer/bool ``y``: one class id ``0..K-1`` per row, with a sane ``K``."""
    import numpy as np

    shape = tuple(y.shape)
    if len(shape) != 1:
        raise DataError(
            f"{where}: integer labels 'y' have shape {shape}; class labels are one id per row. "
            "For one-hot labels store y.argmax(axis=1); for (n, 1) labels store y.ravel(); "
            "for regression targets store them as float"
        )
    rows = shape[0]
    if rows == 0:
        return  # too few rows: reported with the lengths check
    values = np.asarray(y)
    low, high = int(values.min()), int(values.max())
    if low < 0:
        raise DataError(
            f"{where}: labels 'y' must be non-negative class indices 0..K-1; found {low}"
        )
    classes = high + 1
    if classes > min(MAX_CLASSES, rows):
        raise DataError(
            f"{where}: labels 'y' go up to {high}, i.e. {classes} classes for {rows} rows; "
            f"class labels must be ids 0..K-1 with K at most {MAX_CLASSES} and at most the "
            "number of rows. Map them to 0..K-1 (np.unique(y, return_inverse=True)[1]), or "
            "store float targets for regression"
        )


def plan_storage(arrays: Mapping[str, Any], where: str) -> StoragePlan:
    """Check the loader's arrays and decide each one's stored dtype.

    Args:
        arrays: name → array-like with ``shape`` and ``dtype`` (numpy arrays, h5py datasets).
        where: the data config and loader, for messages.

    Returns:
        The source and stored dtype of every array.

    Raises:
        DataError: an array cannot be trained on; the message says how to fix it.
    """
    import numpy as np

    if not isinstance(arrays, Mapping) or not arrays:
        raise DataError(f"{where}: the loader must return a non-empty dict of arrays")
    source: dict[str, str] = {}
    stored: dict[str, str] = {}
    for name, arr in arrays.items():
        if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
            raise DataError(
                f"{where}: array {name!r} is a {type(arr).__name__}; return numpy arrays"
            )
        dtype = np.dtype(arr.dtype)
        _refuse_kind(str(name), dtype, where)
        _check_shape(str(name), tuple(arr.shape), where)
        source[name] = str(dtype)
        if name == _LABELS and dtype.kind in "iub":
            _check_labels(arr, where)
            stored[name] = LABEL_DTYPE
        else:
            stored[name] = FEATURE_DTYPE
    return StoragePlan(source, stored)

"""The one way Forge turns values into JSON text: always valid JSON, never bare ``NaN``.

Python's ``json.dumps`` writes ``NaN``, ``Infinity`` and ``-Infinity`` for non-finite
floats, which strict JSON readers (browsers, ``jq``, most other languages) reject. Forge's
convention: **a non-finite float is written as** ``null`` ("no usable value"), everywhere —
metrics of a diverged epoch, a best value never reached, a summary cell. NumPy scalars and
arrays are written as the plain numbers and lists they hold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps_json", "finite_or_none"]


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by ``None``.

    Mappings, lists and tuples are copied (tuples become lists, as JSON has no tuples);
    NumPy scalars and arrays become Python numbers and lists. Anything else is returned as is.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, without importing numpy
    if callable(tolist) and hasattr(value, "dtype"):
        return finite_or_none(tolist())
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``value`` with non-finite floats written as ``null``.

    Args:
        value: what to serialise.
        **kwargs: passed to ``json.dumps`` (``indent``, ``sort_keys``, ``separators``, ...).

    Returns:
        Strict JSON text (``allow_nan=False``: a non-finite float that slipped through would
        raise instead of producing invalid JSON).
    """
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)

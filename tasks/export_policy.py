"""When Train writes the code-free export: at once (single runs), or on first use (sweeps).

Exporting a small model (``torch.export``) costs several times its training, so a sweep of
small experiments would spend most of its time on exports nobody loads. Inside a sweep
(:func:`deferring`, set by the sweep's shard runner unless the sweep file says
``export: eager``) Train records the export as deferred instead; the first
``LoadTrained(..., code_free=True)`` writes it (with the builder, once) and records it,
and every later code-free load uses that file. A single ``luigi ... Train`` run exports at
once, as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["DEFERRED_NOTE", "deferred", "deferring"]

DEFERRED_NOTE = "deferred: written by the first code-free load"

_deferring: list[bool] = []


@contextlib.contextmanager
def deferring(active: bool = True) -> Iterator[None]:
    """Defer the export of every Train run in the block (when ``active``)."""
    _deferring.append(active)
    try:
        yield
    finally:
        _deferring.pop()


def deferred() -> bool:
    """Whether a Train running now should defer its export."""
    return bool(_deferring) and _deferring[-1]

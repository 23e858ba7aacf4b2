"""The ``forge`` command: browse, compare, check, plot, report and clean experiments.

Importing this package (or running ``forge ls``) imports neither torch nor TensorFlow;
the command itself lives in :mod:`tasks.cli.app`.
"""

from __future__ import annotations

__all__: list[str] = []

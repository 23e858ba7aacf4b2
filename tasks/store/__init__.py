"""Forge's storage layer: the one reader and writer of what an experiment stores.

Tasks write through it; the ``forge`` command and LoadTrained read through it. Its
modules, each with one job:

* :mod:`~tasks.store.names`: every stored file and folder name;
* :mod:`~tasks.store.layout`: which folder a step's content goes to (content identity);
* :mod:`~tasks.store.atomic`: atomic writes, leftover clean-up, OS errors as StorageError;
* :mod:`~tasks.store.lock`: the one folder lock;
* :mod:`~tasks.store.records`: typed records of run.json, metrics.json and best.json,
  read tolerantly (damage is a value, not an exception);
* :mod:`~tasks.store.checkpoints`: checkpoint naming, commit markers, pruning;
* :mod:`~tasks.store.metrics_log`: ``metrics.csv``;
* :mod:`~tasks.store.drift`, :mod:`~tasks.store.codecheck`: has the code changed since;
* :mod:`~tasks.store.summary`, :mod:`~tasks.store.index`, :mod:`~tasks.store.catalog`:
  one summary record per experiment, its cache, and finding experiments.

This package imports no submodule here, so importing one of them stays cheap and free of
import cycles; import from the submodules.
"""

from __future__ import annotations

__all__: list[str] = []

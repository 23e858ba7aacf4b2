"""PrepareData: load a dataset through its registered loader, split it, write ``data.h5``.

Arrays are stored as float32 inputs and int64 class labels whatever dtype the loader
returned (:mod:`tasks.data.dtypes`); ``meta.json`` records each array's source and stored
dtype under ``dtypes``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tasks.base import DataParams, ForgeTask
from tasks.config.yamlio import dump_yaml
from tasks.data.dtypes import plan_storage
from tasks.data.h5store import write_splits
from tasks.registry import get_entry
from tasks.store.atomic import atomic_path, atomic_write_text
from tasks.store.names import DATA_CONFIG_FILE, DATA_FILE, META_FILE
from tasks.store.records import write_json

__all__ = ["PrepareData"]

logger = logging.getLogger("forge")


class PrepareData(DataParams, ForgeTask):
    """Turn a data config into ``<results>/<data>-<hash>/`` with data.h5, data.yaml, meta.json."""

    level = "data"

    def produce(self, directory: Path) -> None:
        resolved = self.spec["data"]
        entry = get_entry("dataset", resolved.config["loader"])
        logger.info("loading dataset %r with %s", entry.name, resolved.config["params"])
        arrays = entry.func(**resolved.config["params"])
        where = f"data config {resolved.source} (loader {entry.name!r})"
        # Decided (and refused) before anything is written: float32 inputs, int64 labels.
        plan = plan_storage(arrays, where)
        with atomic_path(directory / DATA_FILE) as tmp:
            meta = write_splits(
                tmp,
                arrays,
                resolved.config["split"],
                {"config_digest": resolved.digest, "loader": entry.name},
                where=where,
                dtypes=plan.stored,
            )
        atomic_write_text(directory / DATA_CONFIG_FILE, dump_yaml(resolved.config))
        record = {
            **meta.to_dict(),
            "dtypes": plan.record(),
            "digest": resolved.digest,
            "file_digests": resolved.file_digests,
            "loader": {
                "name": entry.name,
                "qualname": entry.qualname,
                "fingerprint": entry.fingerprint(),
            },
        }
        write_json(directory / META_FILE, record)
        logger.info("wrote %s: %s rows", directory / DATA_FILE, meta.rows)

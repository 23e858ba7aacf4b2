"""BuildModel: build the model a model config describes and store its initial weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.atomic import atomic_path, atomic_write_text
from tasks.backends import get_backend
from tasks.base import ForgeTask, ModelParams
from tasks.config.schema import input_names
from tasks.config.yamlio import dump_yaml
from tasks.data.h5store import DataMeta, read_meta
from tasks.errors import ConfigError
from tasks.jsonio import dumps_json
from tasks.layout import DATA_FILE
from tasks.prepare_data import PrepareData
from tasks.registry import get_entry

__all__ = ["BuildModel", "INITIAL_WEIGHTS", "MODEL_CONFIG_FILE"]

logger = logging.getLogger("forge")

MODEL_CONFIG_FILE = "model.yaml"
INITIAL_WEIGHTS = "initial"


def _parameter_count(model: Any) -> int | None:
    if hasattr(model, "parameters"):
        return int(sum(p.numel() for p in model.parameters()))
    if hasattr(model, "count_params"):
        return int(model.count_params())
    return None


def _architecture(model: Any) -> str:
    """A readable layer listing: Keras' ``summary()`` table, else ``str(model)`` (torch)."""
    if callable(getattr(model, "summary", None)):
        lines: list[str] = []
        model.summary(print_fn=lambda text, **_: lines.append(text))
        return "\n".join(lines)
    return str(model)


class BuildModel(ModelParams, ForgeTask):
    """Build the model for ``(data, model)`` configs into ``<data dir>/<model>-<hash>/``."""

    level = "model"

    def requires(self) -> PrepareData:
        return PrepareData(**self.upstream_kwargs("data"))

    def run(self) -> None:
        self._check_inputs(read_meta(self.spec.dirs["data"] / DATA_FILE))
        super().run()

    def _check_inputs(self, meta: DataMeta) -> None:
        """Every array named by the model config's ``inputs`` must be in the data.

        Raises:
            ConfigError: an input is missing; the message lists the available arrays.
        """
        resolved = self.spec["model"].config
        if resolved.get("inputs") is None:
            if "x" not in meta.arrays:
                raise ConfigError(
                    f"model config {self.spec['model'].source}: key 'inputs' is not set, so the "
                    f"model gets array 'x', which the data does not have; set inputs to some of "
                    f"the available arrays: {', '.join(sorted(meta.arrays))}"
                )
            return
        for i, name in enumerate(resolved["inputs"]):
            if name not in meta.arrays:
                raise ConfigError(
                    f"model config {self.spec['model'].source}: key 'inputs[{i}]' names array "
                    f"{name!r}, which the data does not have; available arrays: "
                    f"{', '.join(sorted(meta.arrays))}"
                )

    def produce(self, directory: Path) -> None:
        resolved = self.spec["model"].config
        backend = get_backend(
            resolved["framework"], asked_by=f"model config {self.spec['model'].source}"
        )
        entry = get_entry("model", resolved["builder"], resolved["framework"])
        meta = read_meta(self.spec.dirs["data"] / DATA_FILE)
        model = backend.build(
            entry, resolved["params"], meta, seed=resolved["seed"], inputs=input_names(resolved)
        )
        with atomic_path(directory / (INITIAL_WEIGHTS + backend.weights_suffix)) as tmp:
            backend.save_weights(model, tmp)
        atomic_write_text(directory / MODEL_CONFIG_FILE, dump_yaml(resolved))
        summary = {
            "framework": backend.name,
            "builder": {
                "name": entry.name,
                "qualname": entry.qualname,
                "fingerprint": entry.fingerprint(),
            },
            "parameters": _parameter_count(model),
            "architecture": _architecture(model),
        }
        atomic_write_text(directory / "model.json", dumps_json(summary, indent=2) + "\n")
        logger.info(
            "built %s model %r (%s parameters)", backend.name, entry.name, summary["parameters"]
        )

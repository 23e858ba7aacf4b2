"""Evaluate: score a trained experiment on a split; cheap to rerun with another eval config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.base import EvalParams, ForgeTask
from tasks.config.yamlio import dump_yaml
from tasks.data.h5store import BatchStream, read_split, reserve_hdf5
from tasks.errors import ConfigError
from tasks.experiment import Experiment
from tasks.metrics import LOSS_METRIC
from tasks.outputs import named_outputs, primary_output
from tasks.registry import Entry, get_entry
from tasks.store.atomic import atomic_path, atomic_write_text
from tasks.store.names import (
    CONFUSION_FILE,
    EVAL_CONFIG_FILE,
    EVAL_METRICS_FILE,
    PREDICTIONS_FILE,
)
from tasks.store.records import write_json
from tasks.train import Train

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Evaluate"]

logger = logging.getLogger("forge")


def _write_predictions(path: Path, outputs: Any, arrays: dict[str, np.ndarray]) -> None:
    import h5py
    import numpy as np

    named = named_outputs(outputs)
    stored = [np.asarray(v) for v in named.values()] + [v for k, v in arrays.items() if k != "x"]
    reserve_hdf5(path, sum(a.nbytes for a in stored), datasets=len(stored))
    with h5py.File(path, "w") as fh:
        group = fh.create_group("outputs")
        for name, value in named_outputs(outputs).items():
            group.create_dataset(name, data=value)
        targets = fh.create_group("targets")
        for name, value in arrays.items():
            if name != "x":
                targets.create_dataset(name, data=value)


def _confusion(outputs: Any, y: np.ndarray, num_classes: int) -> list[list[int]]:
    """Counts per (true class, predicted class): what ``forge report`` draws."""
    import numpy as np

    pred = np.argmax(np.asarray(primary_output(outputs)), axis=-1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y.astype(np.int64), pred), 1)
    return [[int(c) for c in row] for row in matrix]


def _fingerprint(entry: Entry) -> dict[str, Any]:
    return {"name": entry.name, "qualname": entry.qualname, "fingerprint": entry.fingerprint()}


class Evaluate(EvalParams, ForgeTask):
    """Score an experiment into ``<experiment>/eval/<eval>-<hash>/`` (metrics, predictions)."""

    level = "eval"

    def requires(self) -> Train:
        return Train(**self.upstream_kwargs("train"))

    def produce(self, directory: Path) -> None:
        cfg = self.spec["eval"].config
        experiment = Experiment(self.spec.dirs["train"])
        # build_model checks the experiment first: a damaged one is one clear error, before
        # any work.
        model = experiment.build_model(cfg["checkpoint"])
        backend = experiment.backend
        device = backend.resolve_device(experiment.config["train"]["device"])
        stream = BatchStream(experiment.data_file, cfg["split"], cfg["batch_size"], shuffle=False)
        outputs = backend.predict(model, stream.epoch(0), device, experiment.inputs)
        # Metrics get their own writable copy: the stream's split is shared within the
        # process (a sweep worker), and a metric may change what it is given.
        whole = stream.whole()
        arrays = (
            {k: v.copy() for k, v in whole.items()}
            if whole is not None
            else read_split(experiment.data_file, cfg["split"])
        )
        metrics: dict[str, float] = {}
        code: dict[str, Any] = {"metrics": {}}
        objective_name = experiment.config["model"].get("objective")
        if objective_name:
            # The objective's own named scalars (loss, elbo, ...), in inference mode.
            objective = get_entry("objective", objective_name, experiment.framework)
            metrics.update(backend.evaluate_objective(model, objective, stream.epoch(0), device))
            code["objective"] = _fingerprint(objective)
        for name in cfg["metrics"]:
            entry = get_entry("metric", name)
            if name == LOSS_METRIC:
                if "y" in arrays and not objective_name:
                    loss = experiment.config["train"]["loss"]
                    metrics[name] = backend.loss_value(outputs, arrays["y"], loss)
                continue
            metrics[name] = self._metric(entry, outputs, arrays)
            code["metrics"][name] = _fingerprint(entry)
        record = {
            "split": cfg["split"],
            "checkpoint": cfg["checkpoint"],
            "rows": int(len(next(iter(arrays.values())))),
            "metrics": metrics,
            "code": code,
        }
        write_json(directory / EVAL_METRICS_FILE, record)
        atomic_write_text(directory / EVAL_CONFIG_FILE, dump_yaml(cfg))
        with atomic_path(directory / PREDICTIONS_FILE) as tmp:
            _write_predictions(tmp, outputs, arrays)
        num_classes = experiment.meta.num_classes
        if num_classes and "y" in arrays:
            # The counts, not a figure: drawing costs more than a small experiment's
            # training; forge report draws it from these.
            matrix = _confusion(outputs, arrays["y"], num_classes)
            write_json(directory / CONFUSION_FILE, {"matrix": matrix}, indent=None)
        logger.info("evaluation on %s: %s", cfg["split"], metrics)

    def _metric(self, entry: Entry, outputs: Any, arrays: dict[str, np.ndarray]) -> float:
        """One registered metric over the whole split.

        Raises:
            ConfigError: the metric needs an array the data does not have.
        """
        try:
            return float(entry.func(outputs, arrays))
        except KeyError as err:
            raise ConfigError(
                f"eval config {self.spec['eval'].source}: key 'metrics': metric {entry.name!r} "
                f"looks up {err}, which neither the data (arrays: {', '.join(sorted(arrays))}) "
                "nor the model's outputs have; remove it from metrics"
            ) from err

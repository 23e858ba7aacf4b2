"""TensorBoard HParams: each experiment's config and results in its ``tensorboard/`` folder.

``tensorboard --logdir results`` then lists every experiment as one session in the HParams
dashboard: its flattened resolved config as hyperparameters, its last epoch's metrics
(``final/<name>``) and its best monitored value (``best/<monitor>``) as metrics. Written
with TensorBoard's own protos and event-file writer, so it is the same for every backend
and imports no framework.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.backends.base import event_file_name
from tasks.store.atomic import atomic_path
from tasks.store.jsonio import dumps_json
from tasks.store.metrics_log import read_metrics
from tasks.store.records import BestRecord
from tasks.store.summary import flatten

__all__ = ["hparam_values", "write_hparams"]

# The suffix of the event file holding the HParams summary (beside the backend's scalars).
SUFFIX = ".hparams"


def hparam_values(config: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """The flattened config as HParams values: numbers, booleans and strings as they are,
    anything else (lists, None) as compact JSON text."""
    values: dict[str, bool | int | float | str] = {}
    for key, value in flatten(dict(config)).items():
        if isinstance(value, bool | int | float | str):
            values[key] = value
        else:
            values[key] = dumps_json(value, separators=(",", ":"))
    return values


def _scalar(tag: str, value: float) -> Any:
    from tensorboard.compat.proto import summary_pb2

    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])


def write_hparams(
    experiment_dir: Path, logdir: Path, config: Mapping[str, Any], metrics_file: Path
) -> dict[str, float]:
    """Write one event file into ``logdir``: the HParams session start and its metrics.

    Args:
        experiment_dir: the experiment folder (its last three path parts name the session).
        logdir: the experiment's ``tensorboard/`` folder.
        config: the resolved config (``{"data": …, "model": …, "train": …}``).
        metrics_file: the experiment's ``metrics.csv`` (the last row gives the finals).

    Returns:
        The metric tags written and their values.
    """
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import summary_v2

    rows = read_metrics(metrics_file)
    last = rows[-1] if rows else {}
    step = int(last.get("epoch", 0))
    metrics = {f"final/{k}": float(v) for k, v in last.items() if k != "epoch"}
    best = BestRecord.read(experiment_dir)
    if best.ok and best.monitor and best.value is not None:
        metrics[f"best/{best.monitor}"] = best.value
    if best.ok and best.epoch is not None:
        metrics["best/epoch"] = float(best.epoch)
    now = time.time()
    session = summary_v2.hparams_pb(
        hparam_values(config),
        trial_id="/".join(Path(experiment_dir).parts[-3:]),
        start_time_secs=now,
    )
    events = [
        event_pb2.Event(wall_time=now, file_version="brain.Event:2"),
        event_pb2.Event(wall_time=now, step=0, summary=session),
        *(
            event_pb2.Event(wall_time=now, step=step, summary=_scalar(tag, value))
            for tag, value in metrics.items()
        ),
    ]
    _write_events(logdir, now, events)
    return metrics


def _write_events(logdir: Path, now: float, events: list[Any]) -> None:
    """One complete event file, written atomically under TensorBoard's naming scheme.

    TensorBoard's ``EventFileWriter`` goes through ``tf.io.gfile``, which imports
    TensorFlow when it is installed (seconds, and a second framework in a torch run); its
    ``RecordWriter`` only frames records, on any file object.
    """
    from tensorboard.summary.writer.record_writer import RecordWriter

    logdir.mkdir(parents=True, exist_ok=True)
    with atomic_path(logdir / event_file_name(now, SUFFIX)) as tmp, open(tmp, "wb") as fh:
        writer = RecordWriter(fh)
        for event in events:
            writer.write(event.SerializeToString())
        writer.flush()

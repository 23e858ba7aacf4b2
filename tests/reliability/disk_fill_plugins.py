"""Test plugins: a model that fills its disk the moment Train starts its code-free export.

Loaded by ``tests/reliability/test_disk_full.py`` through
``FORGE_PLUGINS=tests.reliability.disk_fill_plugins``. The model is the built-in MLP at its
default size (its export is larger than the room left) with one extra step in its forward
pass: once the experiment's final weights (``model/last.*``) exist under
``$FILL_DISK_MOUNT``, the next forward pass fills that file system, leaving
``$FILL_DISK_LEAVE`` bytes. In Train, the first forward pass after the final weights are
written is the export's own (the ONNX export runs the model on an example; Keras traces
``call`` to write a SavedModel), so the export is the write that meets a full disk, every
time, however fast or slow the machine. Waiting from outside for the final weights to
appear raced the export, which takes a fraction of a second, and lost on a loaded machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tasks import register_model
from tasks.registry import get_entry
from tests.reliability.hooked_mlp import torch_mlp_calling

NAME = "mlp_filling_disk_at_export"
_filled: list[bool] = []


def fill(mount: Path, leave: int) -> None:
    """Fill the file system at ``mount`` with a filler file until only ``leave`` bytes are free."""
    stat = os.statvfs(mount)
    missing = stat.f_bavail * stat.f_frsize - leave
    with (mount / "filler").open("ab") as fh:
        while missing > 0:
            chunk = min(missing, 1 << 20)
            fh.write(b"\0" * chunk)
            missing -= chunk


def _fill_once_final_weights_exist() -> None:
    """Fill the disk (once per process) when the experiment's final weights are written."""
    if _filled:
        return
    mount = Path(os.environ["FILL_DISK_MOUNT"])
    if any(mount.glob("results/*/*/*/model/last.*")):
        _filled.append(True)
        fill(mount, int(os.environ["FILL_DISK_LEAVE"]))


@register_model(NAME, framework="torch")
def torch_model(input_shape: tuple[int, ...], num_classes: int, meta: Any = None) -> Any:
    """The built-in MLP, wrapped so that its forward pass may fill the disk first."""
    return torch_mlp_calling(_fill_once_final_weights_exist, input_shape, num_classes, meta)


@register_model(NAME, framework="tensorflow")
def tf_model(input_shape: tuple[int, ...], num_classes: int, meta: Any = None) -> Any:
    """The built-in MLP behind a weightless layer whose ``call`` may fill the disk first.

    Keras runs ``call`` in Python only while it traces a graph: when the model is built,
    when the train and eval steps are first traced, and when the export traces it.
    """
    import keras

    class FillingAtExport(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            _fill_once_final_weights_exist()
            return x

    inner = get_entry("model", "mlp", "tensorflow").func(input_shape, num_classes, meta)
    return keras.Sequential(
        [keras.Input(shape=tuple(int(d) for d in input_shape)), FillingAtExport(), inner]
    )

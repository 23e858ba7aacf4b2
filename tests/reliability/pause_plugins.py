"""Test plugins: a model that holds training still at a chosen batch.

Loaded through ``FORGE_PLUGINS=tests.reliability.pause_plugins`` (see
:func:`tests.reliability.crashkit.pausing`). The model is the built-in MLP at its default
size with one extra step in every *training* forward pass, which counts the batches this
process has trained. Environment variables choose what happens:

``PAUSE_AT_BATCH``
    The number (1-based, counted over the process) of the training batch that holds:
    its forward pass writes ``PAUSE_FILE`` and waits until ``PAUSE_RELEASE`` exists,
    or forever (until the test kills the process) when that is unset.
``PAUSE_STALL``
    ``batch:seconds``: that batch's forward pass sleeps that long first (a time-based
    flush, at most once a second, then surely happens at the end of its epoch).

A test that kills, signals or checks a running Train "after epoch k" holds it at the
first batch of epoch k + 1: epoch k and everything that follows it (its checkpoint,
metrics row and TensorBoard scalars) has happened, and nothing of epoch k + 1 has, on a
fast machine or a loaded one alike. Waiting from outside for a file of epoch k and then
acting raced the next epochs. Without ``PAUSE_AT_BATCH`` (e.g. the uninterrupted run a
resumed run is compared with) the extra step does nothing; the weights are the MLP's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tasks import register_model
from tasks.registry import get_entry
from tests.reliability.crashkit import PAUSING_MODEL as NAME
from tests.reliability.hooked_mlp import torch_mlp_calling

_trained: list[int] = [0]


def _count_a_training_batch() -> None:
    """Count one training batch; stall or hold on the batches the environment names."""
    _trained[0] += 1
    batch = _trained[0]
    stall = os.environ.get("PAUSE_STALL")
    if stall:
        at, seconds = stall.split(":")
        if batch == int(at):
            time.sleep(float(seconds))
    if batch != int(os.environ.get("PAUSE_AT_BATCH", "0")):
        return
    Path(os.environ["PAUSE_FILE"]).write_text(str(batch))
    release = os.environ.get("PAUSE_RELEASE")
    while release is None or not Path(release).exists():
        time.sleep(0.01)


@register_model(NAME, framework="torch")
def torch_model(input_shape: tuple[int, ...], num_classes: int, meta: Any = None) -> Any:
    """The built-in MLP, wrapped so that each training forward pass is counted first."""
    return torch_mlp_calling(
        _count_a_training_batch, input_shape, num_classes, meta, training_only=True
    )


@register_model(NAME, framework="tensorflow")
def tf_model(input_shape: tuple[int, ...], num_classes: int, meta: Any = None) -> Any:
    """The built-in MLP behind a layer that counts each training batch.

    The count runs through ``tf.py_function``, so it happens on every call of the traced
    train step, not only while Keras traces it. It adds exactly zero to the input.
    """
    import keras
    import tensorflow as tf

    def count() -> Any:
        _count_a_training_batch()
        return tf.constant(0.0)

    class Pausing(keras.layers.Layer):
        def call(self, x: Any, training: bool | None = None) -> Any:
            if not training:
                return x
            zero = tf.stop_gradient(tf.py_function(count, [], tf.float32))
            zero.set_shape(())  # a py_function's output has no static shape
            return x + zero

    inner = get_entry("model", "mlp", "tensorflow").func(input_shape, num_classes, meta)
    return keras.Sequential(
        [keras.Input(shape=tuple(int(d) for d in input_shape)), Pausing(), inner]
    )

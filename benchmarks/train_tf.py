"""Train-loop overhead, TensorFlow: Forge's Keras training session vs bare ``model.fit``.

The same MLP 64-256-256-2 (Forge's ``mlp`` builder for ``tensorflow``, no dropout), 20,000
rows, batch 128, 3 epochs, one intra-op and one inter-op thread. Forge's side opens a
:class:`BatchStream` on a real ``data.h5`` and runs the backend's ``TrainSession.fit``; the
baseline compiles the same model (same initial weights, Adam, sparse cross-entropy on
logits, accuracy, no XLA, as Forge compiles it) and calls ``model.fit`` on the in-memory
arrays. It runs in a child process so TensorFlow's thread pools are configured before
TensorFlow starts, and reports "not available" while the TensorFlow backend is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._configs import REPO, subprocess_env
from benchmarks._train_loop import BATCH, OPTIMIZER, PARAMS, ROWS, forge_fit_seconds, settings_for
from benchmarks.harness import Target, interleaved, not_available, row, timed

__all__ = ["run"]

NAME = "train loop, tensorflow"
TARGET = Target("<=", 1.05)


def _child(quick: bool) -> list[dict[str, Any]]:
    from tasks.backends import get_backend
    from tasks.errors import BackendUnavailableError, RegistryError

    try:
        backend = get_backend("tensorflow")
    except BackendUnavailableError as err:
        return [not_available(NAME, f"TensorFlow backend not available: {err}", str(TARGET))]
    import keras
    import tensorflow as tf

    from benchmarks._data import make_arrays, write_data_h5
    from tasks.registry import get_entry

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    try:
        entry = get_entry("model", "mlp", "tensorflow")
    except RegistryError as err:
        return [not_available(NAME, f"no tensorflow 'mlp' builder: {err}", str(TARGET))]
    epochs, repeats = (1, 3) if quick else (3, 7)
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        path = Path(tmp) / "data.h5"
        arrays = make_arrays(ROWS)
        meta = write_data_h5(path, arrays)
        initial = backend.build(entry, PARAMS, meta, seed=0).get_weights()
        settings = settings_for(meta, epochs)

        def fresh() -> Any:
            model = backend.build(entry, PARAMS, meta, seed=0)
            model.set_weights(initial)
            return model

        def forge_side() -> float:
            return forge_fit_seconds(backend, fresh(), path, settings)

        def bare_fit() -> float:
            model = fresh()

            def work() -> None:
                keras.utils.set_random_seed(0)
                model.compile(
                    optimizer=keras.optimizers.Adam(learning_rate=OPTIMIZER["lr"]),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                    jit_compile=False,  # as Forge compiles; XLA would time compilation instead
                )
                model.fit(
                    arrays["x"],
                    arrays["y"],
                    batch_size=BATCH,
                    epochs=epochs,
                    shuffle=True,
                    verbose=0,
                )

            return timed(work)

        cand, base = interleaved(forge_side, bare_fit, repeats)
    return [
        row(
            NAME,
            f"s / {epochs} epochs",
            cand,
            base,
            TARGET,
            note=f"MLP 64-256-256-2, {ROWS} rows, batch {BATCH}, 1+1 threads; Forge side "
            "includes opening data.h5; both sides compile and trace once per repetition",
        )
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the measurement in a child process with TensorFlow limited to one thread."""
    env = {
        **subprocess_env(),
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "benchmarks.train_tf", "--child", *(["--quick"] if quick else [])]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    if proc.returncode != 0 or not lines:
        return [
            not_available(
                NAME,
                f"child failed ({proc.returncode}): {proc.stderr[-600:]}",
                str(TARGET),
                status="error",
            )
        ]
    rows: list[dict[str, Any]] = json.loads(lines[-1])
    return rows


if __name__ == "__main__" and "--child" in sys.argv:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(json.dumps(_child("--quick" in sys.argv)), flush=True)

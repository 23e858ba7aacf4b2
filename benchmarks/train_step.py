"""Per-epoch cost of the whole Train step, as a user waits for it.

Forge's side runs the shared loop with exactly Train's callbacks — validation pass,
metrics.csv (synced before each checkpoint commits), TensorBoard, best weights, a
committed (fsynced, sidecar last) checkpoint every epoch, progress — on a real ``data.h5``,
inside the sync barrier Train's step opens: everything written is durable when the timed
block ends (the final round included), as it is before Train's marker.
The baselines do the same useful work the plain way: for torch a hand-written loop (with
the Adam kernel Forge's ``adam`` picks, so the row measures the step, not the optimizer)
that validates and ``torch.save``s model + optimizer every epoch (fsynced); for TensorFlow bare
``model.fit`` with validation data and a ModelCheckpoint-equivalent weights save every epoch.
Both start from the same weights; building the model is outside the timed region.
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
from benchmarks._data import make_arrays
from benchmarks._train_loop import BATCH, OPTIMIZER, PARAMS, ROWS, hand_adam, settings_for
from benchmarks.harness import Target, interleaved, not_available, row, timed

__all__ = ["run"]

TARGETS = {"torch": Target("<=", 1.03), "tensorflow": Target("<=", 1.05)}
VAL = 0.1


class _Quiet:
    def set_status_message(self, message: str) -> None:
        pass

    def set_progress_percentage(self, percentage: float) -> None:
        pass


def forge_step_seconds(backend: Any, model: Any, path: Path, settings: Any, out: Path) -> float:
    """Seconds for the loop with Train's callbacks to train ``model`` into ``out``."""
    from tasks.data.h5store import BatchStream, clear_read_memos
    from tasks.loop import Loop
    from tasks.loop.callbacks import (
        BestWeights,
        Checkpointing,
        MetricsCsv,
        Progress,
        SearchStop,
        TensorBoard,
    )
    from tasks.store.atomic import synced_at_end
    from tasks.store.names import METRICS_FILE, TENSORBOARD_DIR

    def work() -> None:
        clear_read_memos()  # read data.h5 as a fresh Train process does
        train = BatchStream(path, "train", BATCH, shuffle=True, seed=0)
        val = BatchStream(path, "val", BATCH, shuffle=False)
        session = backend.session(model, settings)
        best = BestWeights(out, backend.weights_suffix, "val_loss", "min")
        metrics = MetricsCsv(out / METRICS_FILE)
        callbacks = [
            metrics,
            TensorBoard(backend.scalar_writer(out / TENSORBOARD_DIR)),
            best,
            SearchStop(lambda epoch, logs: None),
            Checkpointing(
                out, backend.checkpoint_suffix, 1, best, keep=1, before_commit=[metrics.sync]
            ),
            Progress(_Quiet(), "bench", interactive=False),
        ]
        # As in Train's step (ForgeTask.run): the step's files are synced in one round at
        # the end, which waits for the last checkpoint's commit, before the timer stops.
        with synced_at_end():
            Loop(session, train, val, settings.epochs, callbacks).run()

    return timed(work)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_data(path: Path) -> Any:
    from tasks.data.h5store import write_splits

    arrays = make_arrays(ROWS)
    meta = write_splits(path, arrays, {"val": VAL, "test": 0.0, "seed": 0}, {}, where="bench")
    return arrays, meta


def _torch(quick: bool) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from tasks.backends import get_backend
    from tasks.data.h5store import read_split
    from tasks.registry import get_entry

    torch.set_num_threads(1)
    epochs, repeats = (2, 3) if quick else (3, 9)
    backend = get_backend("torch")
    entry = get_entry("model", "mlp", "torch")
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        path = Path(tmp) / "data.h5"
        _, meta = _write_data(path)
        train_arrays, val_arrays = read_split(path, "train"), read_split(path, "val")
        initial = {
            k: v.clone() for k, v in backend.build(entry, PARAMS, meta, seed=0).state_dict().items()
        }
        settings = settings_for(meta, epochs)
        x_all, y_all = torch.from_numpy(train_arrays["x"]), torch.from_numpy(train_arrays["y"])
        x_val, y_val = torch.from_numpy(val_arrays["x"]), torch.from_numpy(val_arrays["y"])
        runs = iter(range(10**6))

        def fresh() -> Any:
            model = backend.build(entry, PARAMS, meta, seed=0)
            model.load_state_dict(initial)
            return model

        def forge_side() -> float:
            out = Path(tmp) / f"forge-{next(runs)}"
            return forge_step_seconds(backend, fresh(), path, settings, out)

        def hand_written() -> float:
            model = fresh()
            out = Path(tmp) / f"hand-{next(runs)}"
            out.mkdir()

            def work() -> None:
                torch.manual_seed(0)
                optimizer = hand_adam(model.parameters())
                n = len(x_all)
                for epoch in range(epochs):
                    model.train()
                    order = torch.randperm(n)
                    for start in range(0, n, BATCH):
                        take = order[start : start + BATCH]
                        loss = F.cross_entropy(model(x_all[take]), y_all[take])
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                    model.eval()
                    with torch.no_grad():
                        losses = [
                            F.cross_entropy(model(x_val[s : s + BATCH]), y_val[s : s + BATCH])
                            for s in range(0, len(x_val), BATCH)
                        ]
                        float(torch.stack(losses).mean())
                    target = out / f"epoch-{epoch}.pt"
                    torch.save(
                        {"model": model.state_dict(), "optimizer": optimizer.state_dict()}, target
                    )
                    _fsync(target)

            return timed(work)

        cand, base = interleaved(forge_side, hand_written, repeats)
    cand = [c / epochs for c in cand]
    base = [b / epochs for b in base]
    return row(
        "train step, torch",
        "s / epoch",
        cand,
        base,
        TARGETS["torch"],
        note=f"MLP 64-256-256-2, {ROWS} rows ({VAL:.0%} val), batch {BATCH}, 1 thread; "
        "both validate and save a synced checkpoint every epoch",
    )


def _tensorflow(quick: bool) -> dict[str, Any]:
    from tasks.backends import get_backend

    backend = get_backend("tensorflow")
    import keras
    import tensorflow as tf

    from tasks.data.h5store import read_split
    from tasks.registry import get_entry

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    entry = get_entry("model", "mlp", "tensorflow")
    epochs, repeats = (2, 3) if quick else (3, 7)
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        path = Path(tmp) / "data.h5"
        _, meta = _write_data(path)
        train_arrays, val_arrays = read_split(path, "train"), read_split(path, "val")
        initial = backend.build(entry, PARAMS, meta, seed=0).get_weights()
        settings = settings_for(meta, epochs)
        runs = iter(range(10**6))

        def fresh() -> Any:
            model = backend.build(entry, PARAMS, meta, seed=0)
            model.set_weights(initial)
            return model

        def forge_side() -> float:
            out = Path(tmp) / f"forge-{next(runs)}"
            return forge_step_seconds(backend, fresh(), path, settings, out)

        def bare_fit() -> float:
            model = fresh()
            out = Path(tmp) / f"fit-{next(runs)}"
            out.mkdir()

            def work() -> None:
                keras.utils.set_random_seed(0)
                model.compile(
                    optimizer=keras.optimizers.Adam(learning_rate=OPTIMIZER["lr"]),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                    jit_compile=False,
                )
                save = keras.callbacks.ModelCheckpoint(
                    str(out / "epoch-{epoch:04d}.weights.h5"), save_weights_only=True
                )
                model.fit(
                    train_arrays["x"],
                    train_arrays["y"],
                    batch_size=BATCH,
                    epochs=epochs,
                    shuffle=True,
                    validation_data=(val_arrays["x"], val_arrays["y"]),
                    callbacks=[save],
                    verbose=0,
                )

            return timed(work)

        cand, base = interleaved(forge_side, bare_fit, repeats)
    cand = [c / epochs for c in cand]
    base = [b / epochs for b in base]
    return row(
        "train step, tensorflow",
        "s / epoch",
        cand,
        base,
        TARGETS["tensorflow"],
        note=f"MLP 64-256-256-2, {ROWS} rows ({VAL:.0%} val), batch {BATCH}, 1+1 threads; "
        "baseline: model.fit with validation and ModelCheckpoint(save_weights_only)",
    )


def run(quick: bool) -> list[dict[str, Any]]:
    """The torch row in this process; the TensorFlow row in a one-thread child process."""
    rows = [_torch(quick)]
    env = {
        **subprocess_env(),
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--child"]
    cmd += ["--quick"] if quick else []
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        rows.append(
            not_available(
                "train step, tensorflow",
                f"child failed ({proc.returncode}): {proc.stderr[-600:]}",
                str(TARGETS["tensorflow"]),
                status="error",
            )
        )
    else:
        rows.append(json.loads(lines[-1]))
    return rows


if __name__ == "__main__" and "--child" in sys.argv:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(json.dumps(_tensorflow("--quick" in sys.argv)), flush=True)

"""LoadTrained vs building the model by hand and loading its weights (torch and TensorFlow).

For each framework a child process trains a tiny experiment (blobs, MLP 4-32-3, one
epoch) through ``luigi.build``, so the framework is already imported when timing starts
("excluding framework import"). Then ``LoadTrained(directory).model`` — a fresh object
each time, reading config, metadata and weights from the experiment directory — is
timed against writing the same architecture out by hand and loading ``model/best.*``
with the framework's own loader.
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
from benchmarks.harness import Target, interleaved, not_available, row, timed

__all__ = ["run"]

TARGET = Target("<=", 1.2)
HIDDEN = 32
FEATURES = 4
CLASSES = 3


def _hand_torch(weights: Path) -> Any:
    from safetensors.torch import load_model
    from torch import nn

    model = nn.Sequential(
        nn.Flatten(), nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES)
    )
    load_model(model, str(weights), strict=True)
    return model.eval()


def _hand_keras(weights: Path) -> Any:
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=(FEATURES,)),
            keras.layers.Flatten(),
            keras.layers.Dense(HIDDEN, activation="relu"),
            keras.layers.Dense(CLASSES),
        ],
        name="mlp",
    )
    model.load_weights(str(weights))
    return model


def _child(framework: str, quick: bool) -> list[dict[str, Any]]:
    import luigi

    from tasks import LoadTrained, Train
    from tasks.backends import get_backend
    from tasks.errors import BackendUnavailableError

    name = f"LoadTrained, {framework}"
    try:
        backend = get_backend(framework)
    except BackendUnavailableError as err:
        return [not_available(name, f"{framework} backend not available: {err}", str(TARGET))]
    if framework == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    repeats = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        configs = Path(tmp)
        (configs / "data.yaml").write_text(
            f"loader: blobs\nparams: {{n_samples: 300, centers: {CLASSES}, "
            f"n_features: {FEATURES}, seed: 0}}\n"
        )
        (configs / "model.yaml").write_text(
            f"framework: {framework}\nbuilder: mlp\nparams: {{hidden: [{HIDDEN}], dropout: 0.0}}\n"
        )
        (configs / "train.yaml").write_text("epochs: 1\nbatch_size: 64\n")
        train = Train(
            data_config=str(configs / "data.yaml"),
            model_config=str(configs / "model.yaml"),
            train_config=str(configs / "train.yaml"),
            results_dir=str(configs / "results"),
        )
        if not luigi.build([train], local_scheduler=True, log_level="WARNING"):
            raise RuntimeError(f"training the {framework} experiment for the benchmark failed")
        directory = train.directory
        weights = directory / "model" / f"best{backend.weights_suffix}"
        by_hand = _hand_torch if framework == "torch" else _hand_keras
        cand, base = interleaved(
            lambda: timed(lambda: LoadTrained(directory).model),
            lambda: timed(lambda: by_hand(weights)),
            repeats,
        )
    return [
        row(
            name,
            "s per load",
            cand,
            base,
            TARGET,
            note="fresh LoadTrained(dir).model vs the architecture written out by hand + the "
            "framework's weight loader; framework already imported",
        )
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    """One row per framework, each measured in its own child process."""
    try:
        from tasks import LoadTrained  # noqa: F401
    except ImportError as err:
        return [
            not_available("LoadTrained", f"tasks.LoadTrained is not available: {err}", str(TARGET))
        ]
    rows: list[dict[str, Any]] = []
    env = {
        **subprocess_env(),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
    }
    for framework in ("torch", "tensorflow"):
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.load_trained",
            "--child",
            framework,
            *(["--quick"] if quick else []),
        ]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
        if proc.returncode != 0 or not lines:
            rows.append(
                not_available(
                    f"LoadTrained, {framework}",
                    f"child failed ({proc.returncode}): {proc.stderr[-600:]}",
                    str(TARGET),
                    status="error",
                )
            )
            continue
        rows.extend(json.loads(lines[-1]))
    return rows


if __name__ == "__main__" and "--child" in sys.argv:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _framework = sys.argv[sys.argv.index("--child") + 1]
    print(json.dumps(_child(_framework, "--quick" in sys.argv)), flush=True)

"""A crafted SavedModel or HDF5 file cannot touch files through the TensorFlow backend.

Each crafted artefact first does its harm through plain TensorFlow / h5py (the control),
then is refused by the backend before anything runs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from tasks.data.h5store import DataMeta
from tasks.errors import CorruptArtifactError

pytestmark = [
    pytest.mark.tensorflow,
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow"),
]

REPO = Path(__file__).resolve().parents[2]
SECRET = b"TOP-SECRET-BYTES-0123456789abcdef"


@pytest.fixture(scope="module")
def backend() -> Any:
    from tasks.backends import get_backend

    return get_backend("tensorflow")


def _meta(shape: tuple[int, ...]) -> DataMeta:
    return DataMeta(
        arrays={
            "x": {"shape": list(shape), "dtype": "float32"},
            "y": {"shape": [], "dtype": "int64"},
        },
        num_classes=3,
        task="classification",
        rows={"train": 8},
    )


def _writes_on_predict(path: Path, marker: Path) -> None:
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])
        def serve(self, x: Any) -> Any:
            tf.io.write_file(str(marker), "owned")
            return x * 2.0

    model = Model()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})


def _writes_on_load(path: Path, marker: Path) -> None:
    import tensorflow as tf

    class Resource(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self) -> Any:
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="forge_test")

        def _initialize(self) -> Any:
            tf.io.write_file(str(marker), "owned")
            return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1.0)

    class Model(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = Resource()

        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])
        def serve(self, x: Any) -> Any:
            return x * 2.0

    model = Model()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})


@pytest.mark.parametrize(
    ("craft", "when"), [(_writes_on_predict, "predict"), (_writes_on_load, "load")]
)
def test_savedmodel_that_writes_files_is_refused(
    backend: Any, tmp_path: Path, craft: Any, when: str
) -> None:
    import tensorflow as tf

    control_marker, marker = tmp_path / "control-marker", tmp_path / "marker"
    craft(tmp_path / "control.savedmodel", control_marker)
    craft(tmp_path / "model.savedmodel", marker)
    assert not control_marker.exists() and not marker.exists()  # saving traced, did not run
    loaded = tf.saved_model.load(str(tmp_path / "control.savedmodel"))
    if when == "predict":
        assert not control_marker.exists()
        loaded.serve(tf.zeros((1, 4)))
    assert control_marker.read_bytes() == b"owned"  # control: plain TensorFlow writes it
    with pytest.raises(
        CorruptArtifactError, match=r"model\.savedmodel is refused: .*(WriteFile|PartitionedCall)"
    ):
        backend.load_export(tmp_path / "model.savedmodel")
    assert not marker.exists()


def test_forge_exports_of_every_builder_pass_the_allowlist(backend: Any, tmp_path: Path) -> None:
    from tasks.backends import tf_models
    from tasks.backends._savedmodel_guard import check_saved_model

    sys.path.insert(0, str(REPO / "examples" / "vae"))
    try:
        import plugins  # the VAE example's builders
    finally:
        sys.path.remove(str(REPO / "examples" / "vae"))
    builds = {
        "mlp": (tf_models.mlp((4,), 3), (4,)),
        "linear": (tf_models.linear((4,), 3), (4,)),
        "cnn": (tf_models.cnn((8, 8, 1), 3), (8, 8, 1)),
        "vae": (plugins.vae_tf((16,)), (16,)),
    }
    for name, (model, shape) in builds.items():
        if not model.built:
            model.build((None, *shape))
        path = tmp_path / f"{name}.savedmodel"
        backend.export(model, _meta(shape), path)
        check_saved_model(path)
        out = backend.load_export(path)({"x": np.ones((3, *shape), np.float32)})
        first = next(iter(out.values())) if isinstance(out, dict) else out
        assert np.asarray(first).shape[0] == 3


def _mlp(backend: Any) -> Any:
    from tasks.registry import get_entry

    return backend.build(get_entry("model", "mlp", "tensorflow"), {}, _meta((4,)), seed=0)


@pytest.mark.parametrize("kind", ["weights", "checkpoint"])
def test_tf_hdf5_with_external_storage_is_refused(backend: Any, tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "outside" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    model = _mlp(backend)
    path = tmp_path / ("best.weights.h5" if kind == "weights" else "epoch-0001.ckpt")
    if kind == "weights":
        backend.save_weights(model, path)
    else:
        from tasks.backends.base import TrainSettings

        settings = TrainSettings(
            epochs=1, batch_size=8, optimizer={"name": "adam", "lr": 1e-3, "weight_decay": 0.0,
            "momentum": 0.0}, loss="cross_entropy", seed=0, device="cpu", objective=None,
            meta=_meta((4,)),
        )  # fmt: skip
        backend.session(model, settings).save_checkpoint(path, 1)
    with h5py.File(path, "a") as fh:
        fh.create_dataset(
            "leak", shape=(len(SECRET),), dtype="u1", external=[(secret, 0, len(SECRET))]
        )
    with h5py.File(path, "r") as fh:  # control: plain h5py returns the outside file's bytes
        assert bytes(np.asarray(fh["leak"])) == SECRET
    with pytest.raises(CorruptArtifactError, match="external storage"):
        backend.load_weights(_mlp(backend), path)


def test_load_time_initializer_is_caught_by_the_function_walk_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if the top-level graph passed, the initializer's WriteFile is found."""
    from tensorflow.core.protobuf import saved_model_pb2

    from tasks.backends import _savedmodel_guard as guard

    path = tmp_path / "model.savedmodel"
    _writes_on_load(path, tmp_path / "marker")
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    top = frozenset(n.op for n in saved.meta_graphs[0].graph_def.node)
    monkeypatch.setattr(guard, "TOP_LEVEL_OPS", guard.TOP_LEVEL_OPS | top)
    with pytest.raises(CorruptArtifactError, match="initializer.*runs the operator WriteFile"):
        guard.check_saved_model(path)

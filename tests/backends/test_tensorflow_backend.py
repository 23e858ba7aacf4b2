"""The TensorFlow / Keras 3 backend against real Keras: weights, checkpoints, resume, outputs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from tasks.backends.base import TrainSettings
from tasks.data.h5store import BatchStream, DataMeta, read_meta, write_splits
from tasks.errors import ConfigError, CorruptArtifactError
from tasks.loop import fit_epochs
from tasks.registry import get_entry
from tests.support import REPO

# Checked without importing TensorFlow, so the backend's quieting of its start-up logs applies.
pytestmark = [
    pytest.mark.tensorflow,
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow"),
]


@pytest.fixture(scope="module")
def backend() -> Any:
    from tasks.backends import get_backend

    return get_backend("tensorflow")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small 3-class problem in data.h5: 150 rows of 4 features."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=150).astype(np.int64)
    x = (rng.normal(size=(150, 4)) + y[:, None]).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "data.h5"
    write_splits(path, {"x": x, "y": y}, {"val": 0.2, "test": 0.2, "seed": 0}, {}, "test data")
    return path


@pytest.fixture(scope="module")
def regression_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small regression problem in data.h5: y = x @ w + noise."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=120)).astype(np.float32)
    path = tmp_path_factory.mktemp("regression") / "data.h5"
    write_splits(path, {"x": x, "y": y}, {"val": 0.2, "test": 0.2, "seed": 0}, {}, "test data")
    return path


@pytest.fixture(scope="module")
def meta(data_file: Path) -> DataMeta:
    return read_meta(data_file)


def _settings(meta: DataMeta, epochs: int = 3, **optimizer: Any) -> TrainSettings:
    opt = {"name": "adam", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.0, **optimizer}
    return TrainSettings(
        epochs=epochs,
        batch_size=16,
        optimizer=opt,
        loss="cross_entropy",
        seed=0,
        device="cpu",
        objective=None,
        meta=meta,
    )


def _mlp(backend: Any, meta: DataMeta, seed: int = 0, **params: Any) -> Any:
    return backend.build(get_entry("model", "mlp", "tensorflow"), params, meta, seed=seed)


def _streams(data_file: Path) -> tuple[BatchStream, BatchStream]:
    return (
        BatchStream(data_file, "train", 16, shuffle=True, seed=0),
        BatchStream(data_file, "val", 16, shuffle=False),
    )


def _predict(backend: Any, model: Any, data_file: Path) -> np.ndarray:
    stream = BatchStream(data_file, "test", 32, shuffle=False)
    return np.asarray(backend.predict(model, stream.epoch(0), "cpu"))


def test_builders_take_the_same_parameters_as_their_torch_twins() -> None:
    for name in ("mlp", "cnn", "linear"):
        tf_entry = get_entry("model", name, "tensorflow")
        torch_entry = get_entry("model", name, "torch")
        assert tf_entry.defaults == torch_entry.defaults, name
        assert tf_entry.required == torch_entry.required, name
        assert tf_entry.reserved == torch_entry.reserved, name


def test_registering_the_builders_does_not_import_tensorflow() -> None:
    code = (
        "import sys\nfrom tasks.registry import load_plugins, names\nload_plugins()\n"
        "assert names('model', 'tensorflow') == ['cnn', 'linear', 'mlp']\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_backend_never_imports_torch() -> None:
    code = (
        "import sys\nfrom tasks.backends import get_backend\nget_backend('tensorflow')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_parameter_counts_match_the_torch_architectures(backend: Any, meta: DataMeta) -> None:
    # mlp on 4 features, 3 classes: 4*128+128 + 128*64+64 + 64*3+3 (as torch's nn.Linear).
    assert _mlp(backend, meta).count_params() == 4 * 128 + 128 + 128 * 64 + 64 + 64 * 3 + 3
    image_meta = DataMeta(
        arrays={
            "x": {"shape": [8, 8, 1], "dtype": "float32"},
            "y": {"shape": [], "dtype": "int64"},
        },
        num_classes=10,
        task="classification",
        rows={"train": 1},
    )
    cnn = backend.build(get_entry("model", "cnn", "tensorflow"), {}, image_meta, seed=0)
    convs = (1 * 16 * 9 + 16) + (16 * 32 * 9 + 32)
    assert cnn.count_params() == convs + (32 * 2 * 2 * 64 + 64) + (64 * 10 + 10)
    assert cnn.output_shape == (None, 10)


def test_cnn_rejects_flat_inputs_with_a_fix(backend: Any, meta: DataMeta) -> None:
    with pytest.raises(ConfigError, match="as_image"):
        backend.build(get_entry("model", "cnn", "tensorflow"), {}, meta, seed=0)


def test_building_is_seeded(backend: Any, meta: DataMeta) -> None:
    a, b, c = _mlp(backend, meta, seed=1), _mlp(backend, meta, seed=1), _mlp(backend, meta, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_weights_round_trip_gives_identical_predictions(
    backend: Any, meta: DataMeta, data_file: Path, tmp_path: Path
) -> None:
    trained = _mlp(backend, meta, seed=0)
    path = tmp_path / "best.weights.h5"
    backend.save_weights(trained, path)
    fresh = _mlp(backend, meta, seed=5)
    assert not np.array_equal(
        _predict(backend, fresh, data_file), _predict(backend, trained, data_file)
    )
    backend.load_weights(fresh, path)
    np.testing.assert_array_equal(
        _predict(backend, fresh, data_file), _predict(backend, trained, data_file)
    )


def test_weights_are_written_under_any_temporary_name(
    backend: Any, meta: DataMeta, tmp_path: Path
) -> None:
    model = _mlp(backend, meta)
    odd = tmp_path / "weights.part"
    backend.save_weights(model, odd)
    assert odd.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["weights.part"]
    with h5py.File(odd, "r") as fh:  # a Keras .weights.h5 file, whatever its name
        assert "layers" in fh


def test_truncated_weights_raise_corrupt_artifact_naming_the_file(
    backend: Any, meta: DataMeta, tmp_path: Path
) -> None:
    path = tmp_path / "last.weights.h5"
    backend.save_weights(_mlp(backend, meta), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptArtifactError, match="last.weights.h5"):
        backend.load_weights(_mlp(backend, meta), path)


def test_weights_of_another_architecture_are_refused(
    backend: Any, meta: DataMeta, tmp_path: Path
) -> None:
    path = tmp_path / "other.weights.h5"
    backend.save_weights(_mlp(backend, meta, hidden=[8]), path)
    with pytest.raises(CorruptArtifactError, match="other.weights.h5"):
        backend.load_weights(_mlp(backend, meta), path)


def test_legacy_whole_model_h5_is_never_loaded(
    backend: Any, meta: DataMeta, tmp_path: Path
) -> None:
    path = tmp_path / "model.h5"
    backend.save_weights(_mlp(backend, meta), tmp_path / "w.weights.h5")
    path.write_bytes((tmp_path / "w.weights.h5").read_bytes())
    with pytest.raises(CorruptArtifactError, match="legacy"):
        backend.load_weights(_mlp(backend, meta), path)


def test_checkpoint_restores_epoch_weights_and_optimizer_state(
    backend: Any, meta: DataMeta, data_file: Path, tmp_path: Path
) -> None:
    session = backend.session(_mlp(backend, meta), _settings(meta, epochs=2))
    train, val = _streams(data_file)
    fit_epochs(session, train, val, 0, lambda epoch, logs: None)
    iterations = int(session.optimizer.iterations.numpy())
    assert iterations == 2 * len(train)
    path = tmp_path / f"epoch-0002{backend.checkpoint_suffix}"
    session.save_checkpoint(path, 2)

    other = backend.session(_mlp(backend, meta, seed=3), _settings(meta, epochs=2))
    assert other.load_checkpoint(path) == 2
    assert int(other.optimizer.iterations.numpy()) == iterations
    for mine, theirs in zip(session.optimizer.variables, other.optimizer.variables, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    np.testing.assert_array_equal(
        _predict(backend, other.model, data_file), _predict(backend, session.model, data_file)
    )
    # Evaluate with `checkpoint: <epoch>` loads weights straight from a checkpoint file.
    plain = _mlp(backend, meta, seed=4)
    backend.load_weights(plain, path)
    np.testing.assert_array_equal(
        _predict(backend, plain, data_file), _predict(backend, session.model, data_file)
    )


def test_damaged_checkpoints_raise_corrupt_artifact(
    backend: Any, meta: DataMeta, tmp_path: Path
) -> None:
    session = backend.session(_mlp(backend, meta), _settings(meta))
    path = tmp_path / f"epoch-0001{backend.checkpoint_suffix}"
    session.save_checkpoint(path, 1)
    truncated = tmp_path / f"truncated{backend.checkpoint_suffix}"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptArtifactError, match="truncated"):
        session.load_checkpoint(truncated)
    with h5py.File(path, "r+") as fh:  # a tampered array: wrong shape for its variable
        del fh["model/00000"]
        fh["model/00000"] = np.zeros((2, 2), dtype=np.float32)
    with pytest.raises(CorruptArtifactError, match="epoch-0001"):
        session.load_checkpoint(path)
    foreign = tmp_path / f"foreign{backend.checkpoint_suffix}"
    with h5py.File(foreign, "w") as fh:
        fh["model/00000"] = np.zeros(3)
    with pytest.raises(CorruptArtifactError, match="not a Forge Keras checkpoint"):
        session.load_checkpoint(foreign)


def test_resumed_fit_continues_where_the_checkpoint_left_off(
    backend: Any, meta: DataMeta, data_file: Path, tmp_path: Path
) -> None:
    initial = tmp_path / "initial.weights.h5"
    backend.save_weights(_mlp(backend, meta), initial)
    checkpoint = tmp_path / f"epoch-0002{backend.checkpoint_suffix}"

    def fresh_session() -> Any:
        model = _mlp(backend, meta)
        backend.load_weights(model, initial)
        return backend.session(model, _settings(meta, epochs=3))

    full_logs: dict[int, dict[str, float]] = {}
    full = fresh_session()

    def record(epoch: int, logs: dict[str, float]) -> None:
        full_logs[epoch] = logs
        if epoch == 2:
            full.save_checkpoint(checkpoint, epoch)

    fit_epochs(full, *_streams(data_file), 0, record)
    assert sorted(full_logs) == [1, 2, 3]

    resumed_logs: dict[int, dict[str, float]] = {}
    resumed = fresh_session()
    start = resumed.load_checkpoint(checkpoint)
    fit_epochs(
        resumed, *_streams(data_file), start, lambda e, logs: resumed_logs.__setitem__(e, logs)
    )
    assert sorted(resumed_logs) == [3]
    assert int(resumed.optimizer.iterations.numpy()) == int(full.optimizer.iterations.numpy())
    for key, value in full_logs[3].items():
        assert resumed_logs[3][key] == pytest.approx(value, rel=1e-4), key
    for mine, theirs in zip(resumed.model.get_weights(), full.model.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)


def test_fit_logs_use_the_torch_metric_names(backend: Any, meta: DataMeta, data_file: Path) -> None:
    logs: list[dict[str, float]] = []
    session = backend.session(_mlp(backend, meta), _settings(meta, epochs=2))
    fit_epochs(session, *_streams(data_file), 0, lambda epoch, values: logs.append(values))
    assert [set(entry) for entry in logs] == [{"loss", "accuracy", "val_loss", "val_accuracy"}] * 2
    assert all(isinstance(v, float) for entry in logs for v in entry.values())


def test_mse_regression_trains_and_logs_loss_only(backend: Any, regression_file: Path) -> None:
    meta = read_meta(regression_file)
    settings = TrainSettings(**{**_settings(meta, epochs=4).__dict__, "loss": "mse"})
    linear = backend.build(get_entry("model", "linear", "tensorflow"), {}, meta, seed=0)
    assert linear.output_shape == (None, 1)
    logs: list[dict[str, float]] = []
    fit_epochs(
        backend.session(linear, settings),
        *_streams(regression_file),
        0,
        lambda e, v: logs.append(v),
    )
    assert [set(entry) for entry in logs] == [{"loss", "val_loss"}] * 4
    assert logs[-1]["loss"] < logs[0]["loss"]
    outputs = _predict(backend, linear, regression_file)
    y = BatchStream(regression_file, "test", 64, shuffle=False).epoch(0).__next__()["y"]
    expected = float(np.mean((outputs.reshape(y.shape) - y) ** 2))
    assert backend.loss_value(outputs, y, "mse") == pytest.approx(expected, rel=1e-5)


def test_training_learns(backend: Any, meta: DataMeta, data_file: Path) -> None:
    logs: list[dict[str, float]] = []
    session = backend.session(_mlp(backend, meta), _settings(meta, epochs=5))
    fit_epochs(session, *_streams(data_file), 0, lambda epoch, values: logs.append(values))
    assert logs[-1]["loss"] < logs[0]["loss"]
    assert logs[-1]["val_accuracy"] > 0.6


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "adamw"])
def test_every_optimizer_trains(name: str, backend: Any, meta: DataMeta, data_file: Path) -> None:
    logs: list[dict[str, float]] = []
    settings = _settings(meta, epochs=2, name=name, weight_decay=0.01, momentum=0.9)
    session = backend.session(_mlp(backend, meta), settings)
    fit_epochs(session, *_streams(data_file), 0, lambda epoch, values: logs.append(values))
    assert len(logs) == 2 and np.isfinite(logs[-1]["loss"])


def test_weight_decay_is_an_l2_gradient_term_as_in_torch() -> None:
    import keras

    from tasks.backends._tensorflow import make_optimizer

    var = keras.Variable(np.array([1.0, -2.0], dtype=np.float32))
    grad = np.array([0.5, 0.5], dtype=np.float32)
    optimizer = make_optimizer({"name": "sgd", "lr": 0.1, "weight_decay": 0.1, "momentum": 0.0})
    optimizer.apply_gradients([(keras.ops.convert_to_tensor(grad), var)])
    # torch.optim.SGD: w - lr * (g + wd * w)
    np.testing.assert_allclose(var.numpy(), [1.0 - 0.1 * (0.5 + 0.1), -2.0 - 0.1 * (0.5 - 0.2)])


def test_predict_keeps_tuple_and_dict_outputs(backend: Any, data_file: Path) -> None:
    import keras

    inputs = keras.Input((4,))
    first, second = keras.layers.Dense(3)(inputs), keras.layers.Dense(1)(inputs)
    stream = BatchStream(data_file, "test", 7, shuffle=False)
    as_tuple = backend.predict(keras.Model(inputs, [first, second]), stream.epoch(0), "cpu")
    assert isinstance(as_tuple, tuple) and [a.shape for a in as_tuple] == [(30, 3), (30, 1)]
    as_dict = backend.predict(
        keras.Model(inputs, {"logits": first, "score": second}), stream.epoch(0), "cpu"
    )
    assert isinstance(as_dict, dict) and as_dict["logits"].shape == (30, 3)
    np.testing.assert_allclose(as_dict["logits"], as_tuple[0], rtol=1e-6)


def test_loss_value_is_the_training_loss(backend: Any) -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    y = np.array([0, 2])
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(log_softmax[np.arange(2), y])
    assert backend.loss_value(logits, y, "cross_entropy") == pytest.approx(expected, rel=1e-5)
    targets = np.array([1.0, 3.0])
    assert backend.loss_value(np.array([[2.0], [1.0]]), targets, "mse") == pytest.approx(2.5)


def test_scalars_read_back_with_tensorboards_event_accumulator(
    backend: Any, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = backend.scalar_writer(tmp_path)
    names = ("loss", "accuracy", "val_loss", "val_accuracy")
    for step in (1, 2):
        writer.add_scalars(step, {name: 0.1 * step for name in names})
    writer.close()
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert set(accumulator.Tags()["scalars"]) == set(names)
    events = accumulator.Scalars("val_loss")
    assert [(e.step, round(e.value, 6)) for e in events] == [(1, 0.1), (2, 0.2)]


def test_export_loads_without_builder_code(
    backend: Any, meta: DataMeta, data_file: Path, tmp_path: Path
) -> None:
    model = _mlp(backend, meta)
    path = tmp_path / backend.export_name
    backend.export(model, meta, path)
    x = BatchStream(data_file, "test", 64, shuffle=False).epoch(0).__next__()["x"]
    code = (
        "import sys, numpy as np\nfrom tasks.backends import get_backend\n"
        f"run = get_backend('tensorflow').load_export(__import__('pathlib').Path({str(path)!r}))\n"
        f"np.save(sys.argv[1], run({{'x': np.load(sys.argv[2])}}))\n"
        "assert 'tasks.backends.tf_models' not in sys.modules\n"
    )
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "out.npy"), str(tmp_path / "x.npy")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    expected = np.asarray(backend.predict(model, [{"x": x}], "cpu"))
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-5, atol=1e-6)


def test_damaged_export_raises_corrupt_artifact(backend: Any, tmp_path: Path) -> None:
    path = tmp_path / backend.export_name
    path.mkdir()
    (path / "saved_model.pb").write_bytes(b"not a graph")
    with pytest.raises(CorruptArtifactError, match="model.savedmodel"):
        backend.load_export(path)


def test_devices_and_versions(backend: Any) -> None:
    import tensorflow as tf

    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert backend.resolve_device("auto") == ("cuda" if has_gpu else "cpu")
    assert backend.resolve_device("cpu") == "cpu"
    if not has_gpu:
        with pytest.raises(ConfigError, match="device"):
            backend.resolve_device("cuda")
    versions = backend.versions()
    assert versions["tensorflow"] == tf.__version__ and "keras" in versions

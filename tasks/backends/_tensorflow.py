"""The TensorFlow / Keras 3 backend: compiled steps, HDF5 checkpoints, SavedModel.

Training runs through Forge's shared loop (``tasks/loop``) with ``tf.function`` train and
eval steps that compute the train config's loss, or a registered objective, in Keras'
training mode. Batches stream from ``data.h5`` through
:class:`~tasks.data.h5store.BatchStream`, so a dataset larger than memory trains too. Weights are
``.weights.h5`` files and checkpoints are plain HDF5 arrays: nothing is ever unpickled and
legacy whole-model ``.h5`` files are never loaded.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

# Keras runs on TensorFlow unless KERAS_BACKEND (or ~/.keras/keras.json) says otherwise;
# Forge's entry points quiet TensorFlow's start-up logging before it is imported.
import keras
import numpy as np
import tensorflow as tf

from tasks.backends._savedmodel_guard import check_saved_model
from tasks.backends.base import (
    Backend,
    TrainSession,
    TrainSettings,
    call_builder,
    checked_objective_result,
    input_shapes,
    require_readable,
)
from tasks.backends.base import make_optimizer as base_make_optimizer
from tasks.backends.threads import forked_worker_threads
from tasks.config.schema import DEFAULT_INPUTS
from tasks.data.h5safe import open_checked
from tasks.data.h5store import DataMeta, reserve_hdf5
from tasks.errors import BackendUnavailableError, ConfigError, CorruptArtifactError
from tasks.outputs import concat_outputs, primary_output
from tasks.registry import Entry

if keras.backend.backend() != "tensorflow":
    raise BackendUnavailableError(
        f"Keras runs on the {keras.backend.backend()!r} backend (KERAS_BACKEND="
        f"{os.environ.get('KERAS_BACKEND')!r}); Forge's tensorflow framework needs "
        "KERAS_BACKEND=tensorflow (or unset)"
    )
__all__ = ["TensorFlowBackend", "coupled_l2", "make_optimizer"]

if (_threads := forked_worker_threads()) is not None:
    with contextlib.suppress(RuntimeError):  # TensorFlow already started: too late
        tf.config.threading.set_intra_op_parallelism_threads(_threads)
        tf.config.threading.set_inter_op_parallelism_threads(_threads)

CHECKPOINT_FORMAT = "forge-keras-checkpoint"
_KERAS_WEIGHTS = ".weights.h5"


def _tf_device(device: str) -> str:
    """Forge's device names (``cpu``, ``cuda``, ``cuda:1``) as TensorFlow device strings."""
    if device.startswith("cuda"):
        index = device.split(":", 1)[1] if ":" in device else "0"
        return f"/GPU:{index}"
    return "/CPU:0"


def _keras_loss(loss: str) -> keras.losses.Loss:
    if loss == "cross_entropy":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return keras.losses.MeanSquaredError()


def coupled_l2(base: type[keras.optimizers.Optimizer]) -> type[keras.optimizers.Optimizer]:
    """``base`` with torch's ``weight_decay`` semantics: an L2 term added to the gradient.

    Keras' own ``weight_decay`` is decoupled (AdamW-style) for every optimizer, while
    ``torch.optim.Adam/SGD/RMSprop`` add ``weight_decay * w`` to the gradient; the same
    train config must mean the same thing in both frameworks.
    """

    class CoupledL2(base):
        def __init__(self, l2: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.l2 = float(l2)

        def apply(self, grads: list[Any], trainable_variables: list[Any] | None = None) -> Any:
            variables = (
                trainable_variables
                if trainable_variables is not None
                else self._trainable_variables
            )
            grads = [
                g if g is None else g + tf.cast(self.l2, g.dtype) * tf.convert_to_tensor(v)
                for g, v in zip(grads, variables, strict=True)
            ]
            return super().apply(grads, trainable_variables)

    CoupledL2.__name__ = f"{base.__name__}CoupledL2"
    return CoupledL2


def make_optimizer(cfg: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    """The registered Keras optimizer for a resolved ``train.optimizer`` section.

    Raises:
        RegistryError: the name is not a registered TensorFlow optimizer.
    """
    return base_make_optimizer("tensorflow", cfg)


# -- checkpoints: plain arrays in HDF5 ----------------------------------------------------


def _nbytes(variable: Any) -> int:
    """The bytes a variable's values take (without copying them)."""
    return int(np.prod(variable.shape, dtype=np.int64)) * np.dtype(variable.dtype).itemsize


def _copies(variables: list[Any]) -> list[tuple[np.ndarray, str]]:
    """Each variable's value (a copy) and path, in order."""
    return [(np.array(var.numpy()), str(var.path)) for var in variables]


def _read_variables(group: Any, variables: list[Any], path: Path, what: str) -> None:
    names = sorted(group)
    if len(names) != len(variables):
        raise CorruptArtifactError(
            f"checkpoint {path} holds {len(names)} {what} variables but the model has "
            f"{len(variables)}; it belongs to a different model or optimizer"
        )
    values = [np.asarray(group[name][()]) for name in names]
    for var, value, name in zip(variables, values, names, strict=True):
        if tuple(value.shape) != tuple(var.shape):
            raise CorruptArtifactError(
                f"checkpoint {path}: {what} variable {name} ({group[name].attrs.get('path')}) "
                f"has shape {value.shape}, the model's {var.path} has {tuple(var.shape)}"
            )
    for var, value in zip(variables, values, strict=True):
        var.assign(value)


def _open_checkpoint(path: Path) -> Any:
    require_readable(path, "checkpoint")
    try:
        fh = open_checked(path)
    except CorruptArtifactError as err:
        raise CorruptArtifactError(f"checkpoint {path} cannot be opened: {err}") from err
    if fh.attrs.get("format") != CHECKPOINT_FORMAT or "model" not in fh:
        fh.close()
        raise CorruptArtifactError(
            f"checkpoint {path} is not a Forge Keras checkpoint (attribute format != "
            f"{CHECKPOINT_FORMAT!r}); it was tampered with or written by something else"
        )
    return fh


def _restore(path: Path, model: Any, optimizer: Any | None) -> int:
    """Assign a checkpoint's arrays to ``model`` (and ``optimizer``); return its epoch."""
    fh = _open_checkpoint(path)
    try:
        _read_variables(fh["model"], list(model.variables), path, "model")
        if optimizer is not None:
            if "optimizer" not in fh:
                raise CorruptArtifactError(f"checkpoint {path} has no optimizer state")
            _read_variables(fh["optimizer"], list(optimizer.variables), path, "optimizer")
        return int(fh.attrs["epoch"])
    except (OSError, KeyError, ValueError) as err:
        raise CorruptArtifactError(
            f"checkpoint {path} cannot be read (truncated or tampered with): {err}"
        ) from err
    finally:
        fh.close()


# -- objectives ---------------------------------------------------------------------------


def _specs(meta: DataMeta) -> dict[str, tf.TensorSpec]:
    """One batch ``TensorSpec`` per stored array (rows first, any batch size)."""
    return {
        name: tf.TensorSpec((None, *spec["shape"]), tf.as_dtype(spec["dtype"]), name=name)
        for name, spec in meta.arrays.items()
    }


class _ObjectiveStep(keras.layers.Layer):
    """Runs a registered objective on the model inside one Keras call.

    Calling this layer with ``training=True`` puts Keras' call context in training mode,
    which every layer the objective calls without an explicit ``training`` argument
    inherits, exactly as inside ``model.fit``.
    """

    def __init__(self, model: Any, objective: Entry) -> None:
        super().__init__(name="forge_objective")
        self.model = model
        self.objective = objective
        self.built = True  # the wrapped model is built; this layer has no weights of its own

    def call(self, batch: dict[str, Any], training: bool | None = None) -> dict[str, Any]:
        return checked_objective_result(
            self.objective, self.objective.func(model=self.model, batch=batch)
        )


def _mean_over(
    batches: Iterable[Mapping[str, np.ndarray]],
    step: Callable[[dict[str, Any]], Mapping[str, Any]],
    device: str,
) -> dict[str, float]:
    """Run ``step`` on every batch and average its scalars over rows."""
    totals: dict[str, float] = {}
    rows = 0
    with tf.device(device):
        for raw in batches:
            n = len(next(iter(raw.values())))
            result = step({k: tf.convert_to_tensor(v) for k, v in raw.items()})
            for key, value in result.items():
                totals[key] = totals.get(key, 0.0) + float(value) * n
            rows += n
    return {k: v / max(rows, 1) for k, v in totals.items()}


# -- sessions -----------------------------------------------------------------------------


def _reseed_layers(model: Any, seed: int) -> None:
    """Seed the model's random layers (dropout & co.) from the train config's seed.

    Keras layers draw their seeds when built, i.e. from the model seed; torch's dropout
    follows the seed set when training starts. Resetting the seed-generator states here
    makes ``train.seed`` mean the same in both frameworks.
    """
    states = [v for v in model.variables if str(v.path).endswith("seed_generator_state")]
    for i, var in enumerate(states):
        var.assign(np.asarray([seed * 1000 + i, 0], dtype=var.dtype))


_POLICIES = {"bf16": "mixed_bfloat16", "16-mixed": "mixed_float16"}


def _set_policy(model: Any, policy: str) -> None:
    """Compute in ``policy``'s low precision, keeping float32 variables.

    The model is already built (its initial weights were loaded), so the policy is set
    on each layer rather than globally: nothing outside this model changes.
    """
    for layer in model._flatten_layers(include_self=True):
        layer.dtype_policy = policy


class _TFSession(TrainSession):
    """Compiled (``tf.function``) train and eval steps for the shared loop.

    Without an objective the steps compute the train config's loss on ``y`` (plus the
    model's own regularisation losses, as ``model.fit`` does) and, for cross-entropy, the
    accuracy; with one, the objective runs inside :class:`_ObjectiveStep`, so every layer
    it calls, e.g. dropout, sees Keras' training mode as it would inside ``model.fit``.
    """

    def __init__(self, model: Any, settings: TrainSettings) -> None:
        if settings.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(settings.seed)
        _reseed_layers(model, settings.seed)  # a resumed run restores them from its checkpoint
        if settings.precision != "32":
            _set_policy(model, _POLICIES[settings.precision])
        self.model = model
        self.settings = settings
        self.device = _tf_device(settings.device)
        self.optimizer = make_optimizer(settings.optimizer)
        if settings.precision == "16-mixed":
            # float16 gradients underflow without loss scaling; bf16 has float32's range.
            self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
        with tf.device(self.device):
            # Built now so that a checkpoint can restore its slots before training starts.
            self.optimizer.build(model.trainable_variables)
            # Gradient sums of an accumulation group (empty at every epoch's end).
            self._sums = (
                [tf.Variable(tf.zeros_like(v), trainable=False) for v in model.trainable_variables]
                if settings.accumulate > 1
                else []
            )
        if settings.objective is None and "y" not in settings.meta.arrays:
            raise ConfigError(
                f"the data has no 'y' array (only {sorted(settings.meta.arrays)}), so loss "
                f"{settings.loss!r} has no targets; register an objective and set "
                "model.objective"
            )
        self._objective = (
            _ObjectiveStep(model, settings.objective) if settings.objective is not None else None
        )
        signature = [_specs(settings.meta)]
        self._train = tf.function(self._train_fn, input_signature=signature)
        self._add = tf.function(
            self._add_fn, input_signature=[*signature, tf.TensorSpec((), tf.float32)]
        )
        self._apply = tf.function(self._apply_fn)
        self._eval = tf.function(
            lambda batch: self._scalars(batch, training=False), input_signature=signature
        )

    def _scalars(self, batch: dict[str, Any], training: bool) -> dict[str, Any]:
        """The loss to minimise (``loss``) and the batch's other named scalars."""
        if self._objective is not None:
            return dict(self._objective(batch, training=training))
        args = [batch[name] for name in self.settings.inputs]
        outputs = primary_output(self.model(_model_input(args), training=training))
        outputs = tf.cast(outputs, tf.float32)  # a mixed-precision model's low-precision output
        y = batch["y"]
        if self.settings.loss == "cross_entropy":
            loss = _keras_loss("cross_entropy")(y, outputs)
        else:
            outputs = tf.reshape(outputs, tf.shape(y))
            loss = _keras_loss("mse")(tf.cast(y, tf.float32), outputs)
        result = {"loss": loss}
        if training and self.model.losses:
            result["loss"] = loss + tf.add_n(self.model.losses)
        if self.settings.loss == "cross_entropy":
            hits = tf.equal(tf.argmax(outputs, axis=-1), tf.cast(y, tf.int64))
            result["accuracy"] = tf.reduce_mean(tf.cast(hits, tf.float32))
        return result

    def _gradients(self, batch: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            result = self._scalars(batch, training=True)
            loss = result["loss"]
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)
        return result, tape.gradient(loss, variables)

    def _step(self, grads: list[Any]) -> None:
        if self.settings.grad_clip is not None:
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                # Clip the true gradients: unscale first (the optimizer then skips scaling).
                scale = tf.cast(self.optimizer.scale_loss(1.0), tf.float32)
                grads = [g / scale for g in grads]
                self.optimizer.inner_optimizer.apply(
                    tf.clip_by_global_norm(grads, self.settings.grad_clip)[0],
                    self.model.trainable_variables,
                )
                return
            grads = tf.clip_by_global_norm(grads, self.settings.grad_clip)[0]
        self.optimizer.apply(grads, self.model.trainable_variables)

    def _train_fn(self, batch: dict[str, Any]) -> dict[str, Any]:
        result, grads = self._gradients(batch)
        self._step(grads)
        return result

    def _add_fn(self, batch: dict[str, Any], weight: Any) -> dict[str, Any]:
        result, grads = self._gradients(batch)
        for total, grad in zip(self._sums, grads, strict=True):
            total.assign_add(grad * tf.cast(weight, grad.dtype))
        return result

    def _apply_fn(self) -> None:
        self._step([tf.convert_to_tensor(total) for total in self._sums])
        for total in self._sums:
            total.assign(tf.zeros_like(total))

    def mode(self, train: bool) -> contextlib.AbstractContextManager[None]:
        return tf.device(self.device)

    def train_step(
        self, batch: Mapping[str, np.ndarray], weight: float = 1.0, apply: bool = True
    ) -> Mapping[str, Any]:
        if not self._sums:
            return self._train(dict(batch))
        result = self._add(dict(batch), tf.constant(weight, tf.float32))
        if apply:
            self._apply()
        return result

    def eval_step(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        return self._eval(dict(batch))

    def to_numpy(self, values: Sequence[Any]) -> np.ndarray:
        return np.asarray(tf.stack(list(values)).numpy(), dtype=np.float64)

    def learning_rate(self) -> float:
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def set_learning_rate(self, lr: float) -> None:
        self.optimizer.learning_rate.assign(lr)

    snapshots = True

    def state_nbytes(self) -> int | None:
        variables = [*self.model.variables, *self.optimizer.variables]
        try:
            return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
        except TypeError:  # a dtype NumPy does not know (bfloat16): size unknown
            return None

    def checkpoint_writer(self, epoch: int) -> Callable[[Path], None]:
        # model.variables includes the dropout layers' seed-generator states.
        groups = {
            "model": _copies(self.model.variables),
            "optimizer": _copies(self.optimizer.variables),
        }

        def write(path: Path) -> None:
            import h5py

            # Reserve the space first: HDF5 crashes the process on a disk that fills up
            # while it writes.
            values = [value for copies in groups.values() for value, _ in copies]
            reserve_hdf5(path, sum(v.nbytes for v in values), datasets=len(values))
            with _h5py_write_errors(), h5py.File(path, "w") as fh:
                fh.attrs["format"] = CHECKPOINT_FORMAT
                fh.attrs["epoch"] = int(epoch)
                fh.attrs["keras"] = keras.__version__
                for name, arrays in groups.items():
                    group = fh.create_group(name)
                    for i, (value, var_path) in enumerate(arrays):
                        group.create_dataset(f"{i:05d}", data=value).attrs["path"] = var_path

        return write

    def save_checkpoint(self, path: Path, epoch: int) -> None:
        self.checkpoint_writer(epoch)(path)

    def load_checkpoint(self, path: Path) -> int:
        return _restore(path, self.model, self.optimizer)

    def save_weights(self, path: Path) -> None:
        TensorFlowBackend().save_weights(self.model, path)


@contextlib.contextmanager
def _h5py_write_errors() -> Iterator[None]:
    """Report a failed HDF5 write (disk full, file too large) as one plain OSError.

    The traceback of h5py's error holds h5py objects whose destructors would complain
    again later; it is dropped and they are collected here, so the caller reports the
    error once. (The entry points silence what destructors still print.)
    """
    try:
        yield
    except OSError as err:
        code, message = err.errno, err.strerror or str(err)
        del err
        gc.collect()
        raise OSError(code, message) from None


# -- TensorBoard --------------------------------------------------------------------------


# -- the backend --------------------------------------------------------------------------


def _model_input(args: list[Any]) -> Any:
    """Keras' convention: one input as itself, several as a list (as ``fit`` feeds them)."""
    return args[0] if len(args) == 1 else list(args)


def _to_numpy(out: Any) -> Any:
    if isinstance(out, dict):
        return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}
    if isinstance(out, tuple | list):
        return tuple(keras.ops.convert_to_numpy(v) for v in out)
    return keras.ops.convert_to_numpy(out)


class TensorFlowBackend(Backend):
    """Keras 3 models on TensorFlow (``framework: tensorflow``)."""

    name = "tensorflow"
    weights_suffix = _KERAS_WEIGHTS
    # One suffix (Path.suffix) that no weights file has: ".weights.h5" ends in ".h5".
    checkpoint_suffix = ".ckpt"
    export_name = "model.savedmodel"

    def versions(self) -> dict[str, str]:
        return {"tensorflow": tf.__version__, "keras": keras.__version__}

    def accelerators(self) -> dict[str, Any]:
        info = tf.sysconfig.get_build_info()
        gpus = [
            tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")
        ]
        cuda, cudnn = info.get("cuda_version"), info.get("cudnn_version")
        return {
            "cuda": None if cuda is None else str(cuda),
            "cudnn": None if cudnn is None else str(cudnn),
            "gpus": gpus,
        }

    def resolve_device(self, requested: str) -> str:
        has_gpu = bool(tf.config.list_physical_devices("GPU"))
        if requested == "auto":
            return "cuda" if has_gpu else "cpu"
        if requested.startswith("cuda") and not has_gpu:
            raise ConfigError(
                "train config key 'device' is 'cuda' but TensorFlow sees no GPU; "
                "use device: auto or cpu"
            )
        return requested

    def build(
        self,
        entry: Entry,
        params: Mapping[str, Any],
        meta: DataMeta,
        seed: int | None,
        inputs: Sequence[str] | None = None,
    ) -> Any:
        if seed is not None:  # None: weights are loaded next, seeding is wasted work
            keras.utils.set_random_seed(seed)
        model = call_builder(entry, params, meta, inputs, keras.Model, "keras.Model")
        if not model.built:
            # Weights exist only once a model knows its input shape.
            batch_shapes = [(None, *shape) for shape in input_shapes(meta, inputs)]
            model.build(batch_shapes[0] if len(batch_shapes) == 1 else batch_shapes)
        return model

    def describe(self, model: Any) -> tuple[int, str]:
        lines: list[str] = []
        model.summary(print_fn=lambda text, **_: lines.append(text))
        return int(model.count_params()), "\n".join(lines)

    def session(self, model: Any, settings: TrainSettings) -> TrainSession:
        return _TFSession(model, settings)

    def save_weights(self, model: Any, path: Path) -> None:
        with _h5py_write_errors():
            self._save_weights(model, Path(path))

    def _save_weights(self, model: Any, path: Path) -> None:
        weights = list(model.weights)
        reserve_hdf5(path, sum(_nbytes(v) for v in weights), datasets=len(weights))
        if path.name.endswith(_KERAS_WEIGHTS):
            model.save_weights(str(path))
            return
        # Keras insists on the ".weights.h5" ending; write beside and rename.
        staging = path.with_name(path.name + _KERAS_WEIGHTS)
        try:
            model.save_weights(str(staging))
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)

    def load_weights(self, model: Any, path: Path) -> None:
        path = Path(path)
        if path.suffix == self.checkpoint_suffix:
            _restore(path, model, None)
            return
        if not path.name.endswith(_KERAS_WEIGHTS):
            raise CorruptArtifactError(
                f"weights file {path} is not a Keras '{_KERAS_WEIGHTS}' file; Forge never loads "
                "legacy whole-model .h5 files"
            )
        require_readable(path, "weights file")
        # Keras reads the file with h5py as it is; refuse links and external storage first.
        try:
            open_checked(path).close()
        except CorruptArtifactError as err:
            raise CorruptArtifactError(f"weights file {path} cannot be loaded: {err}") from err
        try:
            model.load_weights(str(path))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CorruptArtifactError(
                f"weights file {path} cannot be loaded (truncated, tampered with, or from a "
                f"different architecture): {str(err).splitlines()[0][:300]}"
            ) from err

    def predict(
        self,
        model: Any,
        batches: Iterable[Mapping[str, np.ndarray]],
        device: str,
        inputs: Sequence[str] = DEFAULT_INPUTS,
    ) -> np.ndarray | dict[str, np.ndarray] | tuple[np.ndarray, ...]:
        chunks: list[Any] = []
        with tf.device(_tf_device(device)):
            for raw in batches:
                args = [tf.convert_to_tensor(raw[name]) for name in inputs]
                chunks.append(_to_numpy(model(_model_input(args), training=False)))
        return concat_outputs(chunks)

    def evaluate_objective(
        self, model: Any, objective: Entry, batches: Iterable[Mapping[str, np.ndarray]], device: str
    ) -> dict[str, float]:
        step = _ObjectiveStep(model, objective)
        return _mean_over(batches, lambda batch: step(batch, training=False), _tf_device(device))

    def loss_value(self, outputs: Any, targets: np.ndarray, loss: str) -> float:
        out = np.asarray(primary_output(outputs))
        y = np.asarray(targets)
        if loss != "cross_entropy":
            out, y = out.reshape(y.shape).astype(np.float32), y.astype(np.float32)
        return float(keras.ops.convert_to_numpy(_keras_loss(loss)(y, out)))

    def export(
        self, model: Any, meta: DataMeta, path: Path, inputs: Sequence[str] = DEFAULT_INPUTS
    ) -> None:
        # A SavedModel directory: graph + variables, served without any Python model code.
        specs = _specs(meta)
        signature = [
            specs[name] if name in specs else tf.TensorSpec((None, *shape), tf.float32)
            for name, shape in zip(inputs, input_shapes(meta, inputs), strict=False)
        ]
        model.export(
            str(path),
            format="tf_saved_model",
            verbose=False,
            input_signature=[_model_input(signature)],
        )

    def load_export(
        self, path: Path, inputs: Sequence[str] = DEFAULT_INPUTS
    ) -> Callable[[Mapping[str, np.ndarray]], Any]:
        require_readable(path, "code-free export")
        # tf.saved_model.load runs graph ops; refuse any graph that could touch files first.
        check_saved_model(path)
        try:
            loaded = tf.saved_model.load(str(path))
            serve = loaded.serve
        except Exception as err:  # TF raises many types for a damaged SavedModel
            detail = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
            raise CorruptArtifactError(
                f"code-free export {path} cannot be loaded as a SavedModel (truncated or "
                f"tampered with): {detail}"
            ) from err
        specs = tf.nest.flatten(getattr(serve, "input_signature", None) or [])
        dtypes = [s.dtype if isinstance(s, tf.TensorSpec) else tf.float32 for s in specs]
        dtypes += [tf.float32] * (len(inputs) - len(dtypes))

        def run(batch: Mapping[str, np.ndarray]) -> Any:
            args = [
                tf.convert_to_tensor(np.asarray(batch[name]), dtype=dtype)
                for name, dtype in zip(inputs, dtypes, strict=False)
            ]
            return _to_numpy(serve(_model_input(args)))

        run.module = loaded  # type: ignore[attr-defined]  # LoadTrained.model in code-free mode
        return run

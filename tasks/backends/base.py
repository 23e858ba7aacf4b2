"""The interface every framework backend implements.

Tasks talk to frameworks only through :class:`Backend` and :class:`TrainSession`; the
framework-agnostic parts (the epoch and batch loop, metrics.csv, checkpoint rotation, best
selection, early stopping, resume) live in ``tasks/loop`` and the tasks. A backend module
imports its framework at import time, and is itself imported only when a model config names
that framework.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import struct
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.config.schema import DEFAULT_INPUTS
from tasks.data.h5store import DataMeta
from tasks.errors import ConfigError, StorageError
from tasks.registry import Entry, get_entry

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger("forge")

__all__ = [
    "Backend",
    "EpochCallback",
    "ScalarWriter",
    "TrainSession",
    "TrainSettings",
    "call_builder",
    "checked_objective_result",
    "input_shapes",
    "make_optimizer",
    "prepare_event_dir",
    "require_readable",
]


def require_readable(path: Path, what: str) -> None:
    """Check that this process may read ``path`` before a loader reports it as damaged.

    Loaders turn every failure into "truncated or tampered with"; a file another user
    created without group read permission is neither, and needs another fix.

    Raises:
        StorageError: reading ``path`` is not permitted.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except PermissionError as err:
        raise StorageError(
            f"reading {what} {path} failed: permission denied (it belongs to another user "
            "and is not readable for you); ask its owner to make it group-readable "
            "(`chmod -R g+rwX`), and run Forge with umask 002 in a results folder shared "
            "by a group"
        ) from err
    except OSError:
        return  # missing or damaged: the loader says so
    os.close(fd)


# Called once per finished epoch (1-based) with that epoch's train/val metrics.
EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainSettings:
    """What a backend needs from the resolved train config."""

    epochs: int
    batch_size: int
    optimizer: Mapping[str, Any]
    loss: str
    seed: int
    device: str
    objective: Entry | None
    meta: DataMeta
    inputs: tuple[str, ...] = DEFAULT_INPUTS
    grad_clip: float | None = None
    accumulate: int = 1
    precision: str = "32"
    deterministic: bool = False


def make_optimizer(framework: str, cfg: Mapping[str, Any], **reserved: Any) -> Any:
    """The registered optimizer ``cfg["name"]`` of ``framework``, built from ``cfg``.

    Raises:
        RegistryError: no such optimizer is registered; the message lists those that are.
    """

    entry = get_entry(
        "optimizer", str(cfg["name"]), framework, where="train config: key 'optimizer.name'"
    )
    offered = {
        "lr": float(cfg["lr"]),
        "weight_decay": float(cfg.get("weight_decay", 0.0)),
        "momentum": float(cfg.get("momentum", 0.0)),
        **reserved,
    }
    return entry.func(**{k: v for k, v in offered.items() if k in entry.reserved})


def input_shapes(meta: DataMeta, inputs: Sequence[str] | None) -> list[tuple[int, ...]]:
    """Per-row shapes of the model's inputs (``meta.input_shape`` when none are named)."""
    if not inputs or list(inputs) == list(DEFAULT_INPUTS) and "x" not in meta.arrays:
        return [meta.input_shape]
    return [tuple(meta.arrays[name]["shape"]) for name in inputs]


def call_builder(
    entry: Entry,
    params: Mapping[str, Any],
    meta: DataMeta,
    inputs: Sequence[str] | None,
    expected: type,
    expected_name: str,
) -> Any:
    """Call a registered model builder with the reserved arguments it declares.

    Builders receive ``input_shape`` (the first input's per-row shape), ``num_classes`` and
    ``meta`` when their signature asks for them, plus the config's ``params``.

    Raises:
        ConfigError: the builder returned something other than an ``expected`` model.
    """
    reserved = {
        "input_shape": input_shapes(meta, inputs)[0],
        "num_classes": meta.num_classes,
        "meta": meta,
    }
    model = entry.func(**{k: v for k, v in reserved.items() if k in entry.reserved}, **params)
    if not isinstance(model, expected):
        raise ConfigError(
            f"model builder {entry.name!r} ({entry.qualname}) returned "
            f"{type(model).__name__}, not a {expected_name}"
        )
    return model


def checked_objective_result(objective: Entry, result: Any) -> dict[str, Any]:
    """What an objective returned, checked to be a mapping with a ``loss`` entry.

    Raises:
        ConfigError: it is not; the message names the objective's function.
    """
    if not isinstance(result, Mapping) or "loss" not in result:
        raise ConfigError(
            f"objective {objective.name!r} ({objective.qualname}) must return a "
            f"dict with a 'loss' entry, not {type(result).__name__}"
        )
    return dict(result)


# TensorBoard event files: TFRecords of ``Event`` protos (field 2: the step, a varint).
EVENT_FILE_GLOB = "events.out.tfevents.*"
_RECORD_HEADER = 12  # uint64 length + uint32 masked CRC of the length
_RECORD_FOOTER = 4  # uint32 masked CRC of the data


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _event_step(record: bytes) -> int:
    """The ``step`` of a serialised ``Event`` (0 when it has none, e.g. the file header)."""
    pos = 0
    try:
        while pos < len(record):
            key, pos = _varint(record, pos)
            field, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = _varint(record, pos)
                if field == 2:
                    return value - (1 << 64) if value >= 1 << 63 else value
            elif wire == 1:
                pos += 8
            elif wire == 2:
                size, pos = _varint(record, pos)
                pos += size
            elif wire == 5:
                pos += 4
            else:
                return 0
    except IndexError:
        return 0
    return 0


def _trim_event_file(path: Path, after_step: int) -> None:
    data = path.read_bytes()
    kept: list[bytes] = []
    pos = 0
    while pos + _RECORD_HEADER <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        end = pos + _RECORD_HEADER + length + _RECORD_FOOTER
        if end > len(data):
            break  # a torn last record of a killed run
        if _event_step(data[pos + _RECORD_HEADER : end - _RECORD_FOOTER]) <= after_step:
            kept.append(data[pos:end])
        pos = end
    trimmed = b"".join(kept)
    if trimmed == data:
        return
    # A temporary of the exact form the step's leftover clean-up knows, renamed into place.
    tmp = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        tmp.write_bytes(trimmed)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def event_file_name(now: float, suffix: str = "") -> str:
    """TensorBoard's name for an event file created at ``now`` by this process (matched by
    :data:`EVENT_FILE_GLOB`); ``suffix`` tells apart files of one process and second."""
    return f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}{suffix}"


def prepare_event_dir(logdir: Path, resume_after: int) -> None:
    """Make ``logdir`` ready for a (resumed) run's event file.

    The folder is created here, honouring the umask (TensorBoard writers create it
    ``0755``, which locks out the group of a shared results folder). A run resumed after
    epoch ``resume_after`` writes its steps into a new event file, so the steps after that
    epoch are dropped from the older files (an interrupted run logged them before its
    checkpoint was committed): every epoch's scalars are then stored exactly once.
    """
    logdir.mkdir(parents=True, exist_ok=True)
    for path in sorted(logdir.glob(EVENT_FILE_GLOB)):
        if path.is_file() and not path.is_symlink():
            _trim_event_file(path, resume_after)


class ScalarWriter:
    """Per-epoch scalars as one new TensorBoard event file in ``logdir``.

    Written by the calling thread with TensorBoard's protos and record framing: no writer
    thread competing with training, no framework (``tf.io.gfile`` would import TensorFlow),
    the same file for every backend. The event file is a view of ``metrics.csv``, the
    experiment's record: a failed write (a full disk) is logged once and ends the writing,
    never the training.
    """

    _serial = itertools.count()

    def __init__(self, logdir: Path) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        now = time.time()
        self.path = logdir / event_file_name(now, f".{next(self._serial)}")
        self._fh: Any = None
        try:
            logdir.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 - open until close()
            self._records = RecordWriter(self._fh)
        except OSError as err:
            self._failed(err)
            return
        self._write(self._event(wall_time=now, file_version="brain.Event:2"), flush=True)

    def add_scalars(self, step: int, values: Mapping[str, float], flush: bool = True) -> None:
        """Write ``values`` at ``step``; ``flush``: onto the event file now (else when a
        later flush or :meth:`close` does)."""
        summary = self._summary(
            value=[self._summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()]
        )
        self._write(self._event(wall_time=time.time(), step=int(step), summary=summary), flush)

    def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                fh.close()
            except OSError as err:
                self._failed(err)

    def _write(self, event: Any, flush: bool) -> None:
        if self._fh is None:
            return
        try:
            self._records.write(event.SerializeToString())
            if flush:
                self._fh.flush()
        except OSError as err:
            self._failed(err)
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None

    def _failed(self, err: OSError) -> None:
        logger.warning(
            "TensorBoard events not written to %s (%s); metrics.csv has them", self.path, err
        )


class TrainSession(ABC):
    """One model being trained: what the shared epoch loop (``tasks/loop``) needs of it.

    The loop owns epochs, batches, logging, checkpoint rotation and stopping; a session
    supplies the framework's compiled train and eval steps, its optimizer and learning
    rate, and the saving and restoring of its own state (model, optimizer, RNG).
    """

    model: Any
    settings: TrainSettings

    def mode(self, train: bool) -> AbstractContextManager[None]:
        """A context the loop runs a train (``True``) or eval pass in (device, grad mode)."""
        return nullcontext()

    @abstractmethod
    def train_step(
        self, batch: Mapping[str, np.ndarray], weight: float = 1.0, apply: bool = True
    ) -> Mapping[str, Any]:
        """Train on ``batch``; returns its named scalars (not yet synced).

        The batch's gradient is scaled by ``weight`` and added to what earlier batches of
        the accumulation group left; with ``apply`` the optimizer steps on the sum
        (clipped to ``settings.grad_clip``) and the sum is cleared.
        """

    @abstractmethod
    def eval_step(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        """The named scalars of ``batch`` in inference mode (no gradients)."""

    @abstractmethod
    def to_numpy(self, values: Sequence[Any]) -> np.ndarray:
        """Per-batch scalars returned by the steps as one float64 array (one host sync)."""

    @abstractmethod
    def learning_rate(self) -> float:
        """The optimizer's current learning rate."""

    @abstractmethod
    def set_learning_rate(self, lr: float) -> None:
        """Set the optimizer's learning rate (a schedule's value)."""

    def optimizer_kernel(self) -> str | None:
        """Which implementation runs the optimizer's step, for ``run.json``
        (``optimizer_kernel``): the last bits of the weights depend on it. None when the
        backend has only one."""
        return None

    def checkpoint_writer(self, epoch: int) -> Callable[[Path], None]:
        """A copy of the state :meth:`save_checkpoint` writes, taken now, and the function
        that writes it to a path later — from another thread, while training goes on.

        The default copies nothing and so must be called before training continues;
        backends override it with a real snapshot.
        """
        return lambda path: self.save_checkpoint(path, epoch)

    snapshots = False  # whether checkpoint_writer really copies (safe in the background)

    def state_nbytes(self) -> int | None:
        """About how many bytes a checkpoint holds (model and optimizer state); None when
        unknown. Decides whether checkpoints are written on the training thread."""
        return None

    def weights_writer(self) -> Callable[[Path], None] | None:
        """A copy of the weights :meth:`save_weights` writes, taken now, and the function
        that writes them later from another thread; None when the backend cannot copy
        them (the caller then writes at once).
        """
        return None

    @abstractmethod
    def save_checkpoint(self, path: Path, epoch: int) -> None:
        """Write model, optimizer and RNG state to ``path`` (a temporary name)."""

    @abstractmethod
    def load_checkpoint(self, path: Path) -> int:
        """Restore state saved by :meth:`save_checkpoint`; return its epoch."""

    @abstractmethod
    def save_weights(self, path: Path) -> None:
        """Write the current weights (only) to ``path``."""


class Backend(ABC):
    """A framework: build, train, save, load and run models."""

    name: str
    weights_suffix: str
    checkpoint_suffix: str
    export_name: str

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the framework packages, for run.json."""

    def accelerators(self) -> dict[str, Any]:
        """CUDA and cuDNN versions and GPU names where present (run.json's ``environment``).

        Keys: ``cuda`` and ``cudnn`` (version strings, or None for a CPU-only build) and
        ``gpus`` (the visible devices' names). Cheap: asked once per Train.
        """
        return {"cuda": None, "cudnn": None, "gpus": []}

    @abstractmethod
    def resolve_device(self, requested: str) -> str:
        """``auto`` → the best available device; checks ``cuda`` is really there."""

    @abstractmethod
    def build(
        self,
        entry: Entry,
        params: Mapping[str, Any],
        meta: DataMeta,
        seed: int | None,
        inputs: Sequence[str] | None = None,
    ) -> Any:
        """Build a fresh model with the registered builder, seeded.

        ``input_shape`` given to the builder is the shape of the first of ``inputs``.
        """

    @abstractmethod
    def describe(self, model: Any) -> tuple[int, str]:
        """The model's parameter count and a readable layer listing (for ``model.json``)."""

    def for_inference(self, model: Any) -> Any:
        """``model`` made ready for inference (e.g. torch's eval mode); returns it."""
        return model

    @abstractmethod
    def session(self, model: Any, settings: TrainSettings) -> TrainSession:
        """Start training ``model``."""

    @abstractmethod
    def save_weights(self, model: Any, path: Path) -> None:
        """Write ``model``'s weights to ``path`` in a format that needs no unpickling."""

    @abstractmethod
    def load_weights(self, model: Any, path: Path) -> None:
        """Load weights written by :meth:`save_weights` (or from a checkpoint) into ``model``."""

    @abstractmethod
    def predict(
        self,
        model: Any,
        batches: Iterable[Mapping[str, np.ndarray]],
        device: str,
        inputs: Sequence[str] = DEFAULT_INPUTS,
    ) -> np.ndarray | dict[str, np.ndarray] | tuple[np.ndarray, ...]:
        """Run ``model(*[batch[name] for name in inputs])`` in inference mode over the batches.

        Returns:
            The outputs concatenated over batches, keeping a dict or tuple structure.
        """

    @abstractmethod
    def evaluate_objective(
        self, model: Any, objective: Entry, batches: Iterable[Mapping[str, np.ndarray]], device: str
    ) -> dict[str, float]:
        """The objective's named scalars in inference mode, averaged over rows (no gradients)."""

    @abstractmethod
    def loss_value(self, outputs: Any, targets: np.ndarray, loss: str) -> float:
        """The mean training loss of ``outputs`` against ``targets`` (for evaluation)."""

    def scalar_writer(self, logdir: Path, resume_after: int = 0) -> ScalarWriter:
        """A TensorBoard writer for ``logdir`` writing a new event file; steps after
        ``resume_after`` (the epoch a resumed run restarts from) are dropped from the
        older files first (:func:`prepare_event_dir`)."""
        prepare_event_dir(logdir, resume_after)
        return ScalarWriter(logdir)

    @abstractmethod
    def export(
        self, model: Any, meta: DataMeta, path: Path, inputs: Sequence[str] = DEFAULT_INPUTS
    ) -> None:
        """Write a code-free inference artifact (no model-building code needed to load it).

        Any failure (e.g. outputs the format cannot hold) propagates: Train records it in
        ``run.json`` (``export.ok: false``) and LoadTrained's ``code_free`` reports it.
        """

    @abstractmethod
    def load_export(
        self, path: Path, inputs: Sequence[str] = DEFAULT_INPUTS
    ) -> Callable[[Mapping[str, np.ndarray]], Any]:
        """Load an artifact written by :meth:`export` as a ``batch → outputs`` callable."""

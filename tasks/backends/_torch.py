"""The PyTorch backend: train/eval steps, checkpoints, safetensors weights, ONNX export."""

from __future__ import annotations

import contextlib
import functools
import pickle
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tasks.backends._onnx import export_onnx, load_onnx
from tasks.backends.base import (
    Backend,
    TrainSession,
    TrainSettings,
    call_builder,
    checked_objective_result,
    input_shapes,
    make_optimizer,
    require_readable,
)
from tasks.backends.threads import forked_worker_threads
from tasks.config.schema import DEFAULT_INPUTS
from tasks.data.h5store import DataMeta
from tasks.errors import ConfigError, CorruptArtifactError
from tasks.outputs import concat_outputs, primary_output
from tasks.provenance import package_versions
from tasks.registry import Entry

__all__ = ["TorchBackend", "manual_seed"]

if (_threads := forked_worker_threads()) is not None:
    torch.set_num_threads(_threads)


def _tensor(array: Any) -> torch.Tensor:
    """``array`` as a CPU tensor sharing its memory, or a copy when it is read-only (the
    shared split Evaluate scores): torch must never write into memory it may not."""
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _to_tensors(batch: Mapping[str, np.ndarray], device: str) -> dict[str, torch.Tensor]:
    tensors = {k: _tensor(v) for k, v in batch.items()}
    if device == "cpu":  # already there; skip the per-batch dispatch of .to()
        return tensors
    return {k: v.to(device) for k, v in tensors.items()}


class _BatchAccuracy:
    """One batch's accuracy, computed later together with other batches' (see
    :class:`_Accuracies`): once resolved, element :attr:`index` of the group's
    :attr:`means`, the float32 value ``(pred == y).float().mean()`` gives."""

    __slots__ = ("index", "logits", "means", "y")

    def __init__(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.logits: torch.Tensor | None = logits
        self.y: torch.Tensor | None = y
        self.means: torch.Tensor | None = None
        self.index = 0

    def __float__(self) -> float:
        if self.means is None:
            _resolve([self])
        return float(cast("torch.Tensor", self.means)[self.index])


def _resolve(batches: Sequence[_BatchAccuracy]) -> None:
    """Compute the accuracies of the unresolved ``batches``: one argmax and comparison
    for all, on their device (no host sync)."""
    waiting = [b for b in batches if b.means is None]
    if not waiting:
        return
    logits = [cast("torch.Tensor", b.logits) for b in waiting]
    labels = [cast("torch.Tensor", b.y).reshape(-1) for b in waiting]
    hits = (torch.cat([x.reshape(-1, x.shape[-1]) for x in logits]).argmax(dim=-1)
            == torch.cat(labels)).float()  # fmt: skip
    lengths = torch.tensor([len(y) for y in labels], device=hits.device)
    ids = torch.repeat_interleave(torch.arange(len(labels), device=hits.device), lengths)
    counts = torch.zeros(len(labels), device=hits.device).index_add_(0, ids, hits)
    means = counts / lengths.to(counts.dtype)
    for index, batch in enumerate(waiting):
        batch.means, batch.index, batch.logits, batch.y = means, index, None, None


def _accuracy_values(values: Sequence[Any]) -> np.ndarray:
    """Per-batch values, some of them resolved :class:`_BatchAccuracy`, as float64: one
    device to host copy per group."""
    copied: dict[int, np.ndarray] = {}
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        if isinstance(value, _BatchAccuracy):
            means = cast("torch.Tensor", value.means)
            if id(means) not in copied:
                copied[id(means)] = means.double().cpu().numpy()
            out[i] = copied[id(means)][value.index]
        else:
            out[i] = float(value)
    return out


class _Accuracies:
    """The training and validation accuracy of each batch, computed in groups.

    Five small tensor operations per batch (argmax, compare, cast, mean, detach) cost
    about 3 % of a small model's training step on the CPU; batches are instead held
    (their detached logits and labels) and resolved together once :data:`GROUP` of them,
    or :data:`GROUP_BYTES` of logits, are waiting, and whenever their values are read.
    The values are the same: each batch's own float32 mean of its hits.
    """

    GROUP = 64
    GROUP_BYTES = 4 << 20

    def __init__(self) -> None:
        self._waiting: list[_BatchAccuracy] = []
        self._bytes = 0

    def add(self, logits: torch.Tensor, y: torch.Tensor) -> _BatchAccuracy | torch.Tensor:
        """The accuracy of one batch: its ``logits`` (``(*y.shape, classes)``) against
        ``y``; computed at once, as a tensor, when the shapes do not match that way."""
        if logits.shape[:-1] != y.shape or y.numel() == 0:
            return (logits.detach().argmax(dim=-1) == y).float().mean()
        batch = _BatchAccuracy(logits.detach(), y)
        self._waiting.append(batch)
        self._bytes += logits.numel() * logits.element_size()
        if len(self._waiting) >= self.GROUP or self._bytes >= self.GROUP_BYTES:
            self.resolve()
        return batch

    def resolve(self) -> None:
        """Compute every waiting batch's accuracy."""
        if self._waiting:
            _resolve(self._waiting)
        self._waiting, self._bytes = [], 0


def _scalar(value: Any) -> float:
    """An objective's logged value as a float, without keeping its autograd graph."""
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _supervised_loss(outputs: Any, y: torch.Tensor, loss: str) -> torch.Tensor:
    out = primary_output(outputs)
    if loss == "cross_entropy":
        return F.cross_entropy(out, y.long())
    return F.mse_loss(out.reshape(y.shape).float(), y.float())


def _safe_torch_load(path: Path, device: str) -> Any:
    require_readable(path, "checkpoint")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
    ) as err:  # OSError: a truncated legacy (non-zip) file fails with EINVAL while seeking
        raise CorruptArtifactError(
            f"checkpoint {path} cannot be loaded safely (truncated, tampered with, or not a "
            f"weights-only file): {str(err).splitlines()[0][:300]}"
        ) from err


class _WriteErrorKeeper:
    """A binary file wrapper that remembers the OSError a write raised."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return int(self._fh.write(data))
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as err:
            self.error = err
            raise


def manual_seed(seed: int) -> None:
    """Seed torch's generators as ``torch.manual_seed`` does, without its cost where no
    accelerator can use the seed.

    ``torch.manual_seed`` also hands the seed to CUDA, XPU and MTIA, queued until each is
    first initialised, and formats the caller's whole stack with each hand-over: about
    0.3 ms inside Luigi's deep stack, twice per small experiment. When none of them, nor
    MPS or a custom backend, is available, nothing can ever take the queued seeds, so only
    the CPU generator is seeded; otherwise ``torch.manual_seed`` runs unchanged.
    """
    custom = getattr(torch._C, "_get_privateuse1_backend_name", lambda: "privateuseone")()
    if (
        torch.cuda.is_available()
        or torch.xpu.is_available()
        or torch.mtia.is_available()
        or torch.backends.mps.is_available()
        or custom != "privateuseone"
    ):
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(int(seed))


def _deterministic(seed: int) -> None:
    """Seed every generator and turn on torch's deterministic algorithms (``deterministic``)."""
    import os
    import random

    random.seed(seed)
    np.random.seed(seed)
    manual_seed(seed)
    # cuBLAS needs this workspace setting to be deterministic; set before the first use.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def _cloned(value: Any) -> Any:
    """``value`` with every tensor copied: a snapshot training cannot change."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _cloned(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cloned(v) for v in value)
    return value


def _save_state(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` a checkpoint's state to ``path``, reporting a failed write's OS error."""
    with path.open("wb") as fh:
        sink = _WriteErrorKeeper(fh)
        try:
            torch.save(state, cast("IO[bytes]", sink))
        except RuntimeError as err:
            # torch's zip writer swallows the OS error of a failed write (disk full,
            # EFBIG, EIO) and reports a file-position mismatch; raise the real cause so
            # it becomes one clear StorageError.
            if sink.error is not None:
                raise sink.error from err
            raise


class _TorchSession(TrainSession):
    def __init__(self, model: nn.Module, settings: TrainSettings) -> None:
        if settings.deterministic:
            _deterministic(settings.seed)
        manual_seed(settings.seed)  # dropout & co.; a resumed run restores RNG state
        self.model = model.to(settings.device)
        self.settings = settings
        self.accuracies = _Accuracies()
        self.optimizer = make_optimizer("torch", settings.optimizer, params=model.parameters())
        device_type = settings.device.split(":")[0]
        self.autocast: Any = None
        if settings.precision != "32":
            dtype = torch.bfloat16 if settings.precision == "bf16" else torch.float16
            self.autocast = functools.partial(torch.autocast, device_type, dtype=dtype)
        # float16 gradients underflow without loss scaling; bf16 has float32's range.
        self.scaler = (
            torch.amp.GradScaler(device_type)
            if settings.precision == "16-mixed" and device_type == "cuda"
            else None
        )

    def _step_metrics(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The loss to minimise and the batch's named scalars: detached 0-d tensors, and
        the accuracy as a :class:`_BatchAccuracy` computed with other batches'.

        Scalars stay on the device so the epoch loop adds them up without a host sync per
        batch.
        """
        objective = self.settings.objective
        if objective is not None:
            raw = objective.func(model=self.model, batch=batch)
            result = checked_objective_result(objective, raw)
            loss = result["loss"]
            return loss, {k: torch.as_tensor(v).detach() for k, v in result.items()}
        outputs = self.model(*[batch[name] for name in self.settings.inputs])
        loss = _supervised_loss(outputs, batch["y"], self.settings.loss)
        named: dict[str, Any] = {"loss": loss.detach()}
        if self.settings.loss == "cross_entropy":
            named["accuracy"] = self.accuracies.add(primary_output(outputs), batch["y"])
        return loss, named

    @contextlib.contextmanager
    def mode(self, train: bool) -> Iterator[None]:
        self.model.train(train)
        with torch.set_grad_enabled(train):
            yield

    def _forward(self, batch: dict[str, torch.Tensor]) -> tuple[Any, dict[str, Any]]:
        if self.autocast is None:
            return self._step_metrics(batch)
        with self.autocast():
            return self._step_metrics(batch)

    def train_step(
        self, batch: Mapping[str, np.ndarray], weight: float = 1.0, apply: bool = True
    ) -> Mapping[str, Any]:
        loss, named = self._forward(_to_tensors(batch, self.settings.device))
        if weight != 1.0:
            loss = loss * weight
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()
        if apply:
            if self.settings.grad_clip is not None:
                if self.scaler is not None:
                    self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return named

    def eval_step(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        return self._forward(_to_tensors(batch, self.settings.device))[1]

    def to_numpy(self, values: Sequence[Any]) -> np.ndarray:
        if any(isinstance(v, _BatchAccuracy) for v in values):
            self.accuracies.resolve()  # every value of this session is resolved now
            return _accuracy_values(values)
        return cast("np.ndarray", torch.stack(list(values)).double().cpu().numpy())

    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def optimizer_kernel(self) -> str | None:
        """``fused`` or ``foreach`` when the optimizer was built with one, else ``default``
        (torch's choice: a loop over the tensors on the CPU, ``foreach`` on CUDA), as its
        first parameter group says."""
        group = self.optimizer.param_groups[0]
        return "fused" if group.get("fused") else "foreach" if group.get("foreach") else "default"

    snapshots = True

    def state_nbytes(self) -> int | None:
        tensors = [*self.model.state_dict().values()]
        for per_param in self.optimizer.state.values():
            tensors += [v for v in per_param.values() if isinstance(v, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors)

    def _state(self, epoch: int) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "torch_rng": torch.get_rng_state(),
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if self.settings.device.startswith("cuda"):
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def checkpoint_writer(self, epoch: int) -> Callable[[Path], None]:
        state = _cloned(self._state(epoch))
        return lambda path: _save_state(state, path)

    def save_checkpoint(self, path: Path, epoch: int) -> None:
        _save_state(self._state(epoch), path)

    def weights_writer(self) -> Callable[[Path], None] | None:
        try:  # what save_model does first: tied weights are stored once
            from safetensors.torch import _remove_duplicate_names, save_file
        except ImportError:  # a safetensors without it: the caller writes at once
            return None
        state = self.model.state_dict()
        metadata: dict[str, str] = {}
        for kept, removed in _remove_duplicate_names(state).items():
            for name in removed:
                metadata[name] = kept
                del state[name]
        copies = {k: v.detach().contiguous().clone() for k, v in state.items()}
        return lambda path: save_file(copies, str(path), metadata=metadata or None)

    def load_checkpoint(self, path: Path) -> int:
        state = _safe_torch_load(path, self.settings.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if "cuda_rng" in state and self.settings.device.startswith("cuda"):
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        return int(state["epoch"])

    def save_weights(self, path: Path) -> None:
        TorchBackend().save_weights(self.model, path)


class TorchBackend(Backend):
    """PyTorch models (``framework: torch``)."""

    name = "torch"
    weights_suffix = ".safetensors"
    checkpoint_suffix = ".pt"
    export_name = "model.onnx"

    def versions(self) -> dict[str, str]:
        return package_versions(("torch", "safetensors"))

    def accelerators(self) -> dict[str, Any]:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        gpus = (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available()
            else []
        )
        return {
            "cuda": torch.version.cuda,
            "cudnn": None if cudnn is None else str(cudnn),
            "gpus": gpus,
        }

    def resolve_device(self, requested: str) -> str:
        if requested == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if requested == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                "train config key 'device' is 'cuda' but torch sees no CUDA device; "
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
            manual_seed(seed)
        return call_builder(entry, params, meta, inputs, nn.Module, "torch.nn.Module")

    def describe(self, model: Any) -> tuple[int, str]:
        return int(sum(p.numel() for p in model.parameters())), str(model)

    def for_inference(self, model: Any) -> Any:
        model.eval()
        return model

    def session(self, model: Any, settings: TrainSettings) -> TrainSession:
        return _TorchSession(model, settings)

    def save_weights(self, model: Any, path: Path) -> None:
        from safetensors.torch import save_model

        save_model(model, str(path))

    def load_weights(self, model: Any, path: Path) -> None:
        if path.suffix == self.checkpoint_suffix:
            state = _safe_torch_load(path, "cpu")["model"]
            model.load_state_dict(state)
            return
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        require_readable(path, "weights file")
        try:
            missing, unexpected = load_model(model, str(path), strict=True)
        except (SafetensorError, RuntimeError, OSError) as err:
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
        model.eval()
        model.to(device)
        chunks: list[Any] = []
        with torch.no_grad():
            for raw in batches:
                batch = _to_tensors({name: raw[name] for name in inputs}, device)
                chunks.append(_to_numpy(model(*[batch[name] for name in inputs])))
        return concat_outputs(chunks)

    def evaluate_objective(
        self, model: Any, objective: Entry, batches: Iterable[Mapping[str, np.ndarray]], device: str
    ) -> dict[str, float]:
        model.eval()
        model.to(device)
        totals: dict[str, float] = {}
        rows = 0
        with torch.no_grad():
            for raw in batches:
                n = len(next(iter(raw.values())))
                result = checked_objective_result(
                    objective, objective.func(model=model, batch=_to_tensors(raw, device))
                )
                for key, value in result.items():
                    totals[key] = totals.get(key, 0.0) + _scalar(value) * n
                rows += n
        return {k: v / max(rows, 1) for k, v in totals.items()}

    def loss_value(self, outputs: Any, targets: np.ndarray, loss: str) -> float:
        out = _tensor(primary_output(outputs))
        return float(_supervised_loss(out, _tensor(targets), loss))

    def export(
        self, model: Any, meta: DataMeta, path: Path, inputs: Sequence[str] = DEFAULT_INPUTS
    ) -> None:
        model = model.eval().to("cpu")
        dtypes = [meta.arrays.get(name, {}).get("dtype", "float32") for name in inputs]
        examples = tuple(
            torch.zeros((2, *shape), dtype=getattr(torch, dtype))
            for dtype, shape in zip(dtypes, input_shapes(meta, inputs), strict=False)
        )
        export_onnx(model, examples, inputs, path)

    def load_export(
        self, path: Path, inputs: Sequence[str] = DEFAULT_INPUTS
    ) -> Callable[[Mapping[str, np.ndarray]], Any]:
        require_readable(path, "code-free export")
        if path.suffix == ".pt2":
            # torch.export.load generates and runs Python source from names in the archive:
            # no check of its parts makes a file from somebody else safe to load.
            raise CorruptArtifactError(
                f"code-free export {path} is a torch.export archive (.pt2), which Forge no "
                "longer loads: loading one runs Python code generated from the file. Load the "
                "experiment with its builder (LoadTrained(path) without code_free=True), or "
                "retrain it with this version of Forge to get an ONNX export (model.onnx)"
            )
        return load_onnx(path, inputs)


def _to_numpy(out: Any) -> Any:
    if isinstance(out, dict):
        return {k: v.detach().cpu().numpy() for k, v in out.items()}
    if isinstance(out, tuple | list):
        return tuple(v.detach().cpu().numpy() for v in out)
    return out.detach().cpu().numpy()

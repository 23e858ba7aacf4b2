"""One trained experiment, read back from its folder alone: config, records, data, model.

:class:`Experiment` is a plain object (not a Luigi task). It follows only what the
experiment stored (``config.yaml``, ``run.json``, weights, ``data.h5``), so the original
config files may be gone, the working directory anywhere and the results tree moved to
another machine. Paths are confined to the experiment's results tree; YAML is read with
the capped safe loader and weights without unpickling. Constructing one reads no weights
and imports neither torch nor TensorFlow; :attr:`Experiment.model` and
:meth:`Experiment.predict` do, once, on first use. :class:`tasks.load_trained.LoadTrained`
is the public name users reach it by.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.config.schema import input_names
from tasks.config.yamlio import copy_plain, load_yaml_file
from tasks.errors import (
    CodeDriftWarning,
    ConfigError,
    CorruptArtifactError,
    DataError,
    ExperimentError,
    ExperimentNotFoundError,
    StorageError,
)
from tasks.store.checkpoints import committed
from tasks.store.drift import Drift, code_drift, live_lookup
from tasks.store.metrics_log import read_metrics
from tasks.store.names import (
    CONFIG_FILE,
    DATA_FILE,
    EVAL_DIR,
    META_FILE,
    METRICS_FILE,
    MODEL_DIR,
    PREDICTIONS_FILE,
    RUN_FILE,
    SUCCESS,
)
from tasks.store.records import PERMISSION_DENIED, EvalRecord, RunRecord, read_json_object
from tasks.store.summary import experiment_damage
from tasks.store.versions import memoised_read

if TYPE_CHECKING:
    import numpy as np

    from tasks.backends.base import Backend
    from tasks.data.h5store import DataMeta

__all__ = ["Evaluation", "Experiment", "checkpoint_name", "confined"]


def confined(path: Path, root: Path, *, root_resolved: bool = False) -> Path:
    """``path`` resolved, after checking it stays inside ``root`` (symlinks followed).

    Args:
        path: a path inside ``root``.
        root: the folder ``path`` must stay in.
        root_resolved: ``root`` is already absolute and resolved (an experiment's folder):
            then a ``path`` written below it, none of whose entries below ``root`` is a
            symbolic link, is its own resolution, checked with one ``lstat`` per entry
            instead of resolving both paths from the file system root.

    Raises:
        CorruptArtifactError: the path leads outside ``root``.
    """
    if root_resolved and _plainly_below(os.fspath(path), os.fspath(root)):
        return path
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise CorruptArtifactError(
            f"{path} points outside the experiment's results tree ({root}); refusing to read it"
        )
    return resolved


def _plainly_below(path: str, root: str) -> bool:
    """Whether ``path`` is ``root/a/b/...`` with no ``.``/``..`` part and no entry that is
    a symbolic link (an entry that does not exist yet ends the walk: nothing to follow)."""
    if not os.path.isabs(root) or not path.startswith(root + os.sep):
        return False
    parts = path[len(root) + 1 :].split(os.sep)
    if any(part in ("", ".", "..") for part in parts):
        return False
    current = root
    for part in parts:
        current = f"{current}{os.sep}{part}"
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return True
        except OSError:
            return False
        if stat.S_ISLNK(mode):
            return False
    return True


def checkpoint_name(value: str | int) -> str | int:
    """``"best"``, ``"last"`` or an epoch number, from what a user or a config gave.

    Raises:
        ConfigError: anything else.
    """
    text = str(value).strip()
    if text in ("best", "last"):
        return text
    if text.isdigit():
        return int(text)
    raise ConfigError(f"checkpoint must be 'best', 'last' or an epoch number, not {value!r}")


@dataclass(frozen=True)
class Evaluation:
    """One stored Evaluate result of an experiment (``eval/<name>-<hash>/``)."""

    name: str
    directory: Path
    split: str
    checkpoint: str | int
    rows: int
    metrics: dict[str, float]

    def predictions(self) -> dict[str, np.ndarray]:
        """The model outputs Evaluate stored (``predictions.h5`` group ``outputs``).

        Returns:
            output name → array; a single-output model has the one name ``output``.
        """
        import numpy as np

        from tasks.data.h5safe import open_checked

        path = confined(self.directory / PREDICTIONS_FILE, self.directory)
        try:
            with open_checked(path) as fh:
                return {name: np.asarray(data) for name, data in fh["outputs"].items()}
        except (OSError, KeyError) as err:
            raise CorruptArtifactError(f"{path} cannot be read: {err}") from err


class Experiment:
    """A Train output folder, read back from its files, ready for inference.

    Args:
        directory: the experiment folder (``<results>/<data>-<h>/<model>-<h>/<train>-<h>``).
        checkpoint: ``"best"`` (default), ``"last"`` or an epoch number.
        code_free: use the code-free export Train wrote instead of rebuilding the model
            through its registered builder. Only this explicit choice loads an export.

    Raises:
        ExperimentNotFoundError: ``directory`` is not an experiment folder.
        ConfigError: ``checkpoint`` is not best, last or an epoch number.
    """

    def __init__(
        self, directory: str | Path, *, checkpoint: str | int = "best", code_free: bool = False
    ) -> None:
        self._open(Path(directory).resolve(), checkpoint, code_free, given=directory)

    def _open(
        self,
        resolved: Path,
        checkpoint: str | int,
        code_free: bool,
        given: str | os.PathLike[str] | None = None,
    ) -> None:
        """Set up the object for the folder ``resolved`` (already resolved by the caller).

        Raises:
            ExperimentNotFoundError: the folder holds no stored config.
        """
        self._directory = resolved
        if not (resolved / CONFIG_FILE).is_file():
            raise ExperimentNotFoundError(
                f"{given or resolved} is not an experiment directory (no {CONFIG_FILE}); "
                "point at <results>/<data>-<hash>/<model>-<hash>/<train>-<hash>"
            )
        self._at = checkpoint_name(checkpoint)
        self.code_free = bool(code_free)
        self._runner: Any = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._directory)!r}, checkpoint={self._at!r})"

    # -- where and what ------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The experiment folder (absolute)."""
        return self._directory

    @property
    def complete(self) -> bool:
        """Whether its Train finished (``_SUCCESS`` written)."""
        return (self._directory / SUCCESS).is_file()

    def require_finished(self) -> None:
        """Raises:
        ExperimentNotFoundError: its Train never finished."""
        if not self.complete:
            raise ExperimentNotFoundError(
                f"{self._directory} is not finished (no {SUCCESS}); rerun its Train with the "
                "parameters in its params.json"
            )

    def require_intact(self) -> None:
        """Check, before any model is built, that the records it relies on are sound
        (the same check that lists an experiment as ``damaged`` in ``forge ls``).

        Raises:
            ExperimentNotFoundError: its Train never finished.
            StorageError: a stored file may not be read by this process (permissions).
            CorruptArtifactError: a stored file is damaged; the message names it.
        """
        self.require_finished()
        damage = experiment_damage(self._directory)
        if damage is not None and PERMISSION_DENIED in damage:
            raise StorageError(
                f"reading {self._directory} failed: {damage}; ask the owner to make its files "
                "group-readable (`chmod -R g+rwX`), and run Forge with umask 002 in a "
                "results folder shared by a group"
            )
        if damage is not None:
            raise CorruptArtifactError(
                f"{self._directory} is damaged ({damage}); it cannot be loaded or evaluated: "
                "rerun its Train after `forge rm`, or restore the files from a copy"
            )

    @property
    def data_dir(self) -> Path:
        return self._directory.parent.parent

    @cached_property
    def config(self) -> dict[str, Any]:
        """The stored resolved config: ``{"data": ..., "model": ..., "train": ...}``."""
        return load_yaml_file(self._directory / CONFIG_FILE, what="stored experiment config")

    def _read_config(self) -> dict[str, Any]:
        """The stored config for reading only: this object's own copy once :attr:`config`
        made one (a caller may have changed it), else the one memoised per file version."""
        own = self.__dict__.get("config") or self.__dict__.get("_shared_config")
        if own is not None:
            return own
        shared = load_yaml_file(
            self._directory / CONFIG_FILE, what="stored experiment config", shared=True
        )
        self.__dict__["_shared_config"] = shared  # as of first use, like `config`
        return shared

    @cached_property
    def run(self) -> RunRecord:
        """``run.json``, read tolerantly (``.damage`` says what is wrong with it)."""
        return RunRecord.read(self._directory)

    @property
    def framework(self) -> str:
        """``"torch"`` or ``"tensorflow"``."""
        try:
            return str(self._read_config()["model"]["framework"])
        except (KeyError, TypeError) as err:
            raise CorruptArtifactError(
                f"{self._directory / CONFIG_FILE} has no model.framework; the experiment is damaged"
            ) from err

    @cached_property
    def backend(self) -> Backend:
        from tasks.backends import get_backend

        return get_backend(self.framework, asked_by=f"experiment {self._directory}")

    @property
    def data_file(self) -> Path:
        return confined(self.data_dir / DATA_FILE, self.data_dir, root_resolved=True)

    @cached_property
    def meta(self) -> DataMeta:
        """What PrepareData recorded about the arrays (``meta.json``, else ``data.h5``)."""
        from tasks.data.h5store import DataMeta, read_meta

        path = confined(self.data_dir / META_FILE, self.data_dir, root_resolved=True)
        # Shared per file version; from_dict copies what it keeps, so nobody mutates it.
        raw, damage = memoised_read("meta.json", [str(path)], lambda: read_json_object(path))
        if damage is None:
            try:
                return DataMeta.from_dict(raw)
            except (KeyError, TypeError, ValueError):
                pass
        return read_meta(self.data_file)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The data arrays passed to the model (model config ``inputs``, default ``x``)."""
        return input_names(self._read_config()["model"])

    # -- what training and evaluation recorded -------------------------------------------

    def data(self, split: str = "test") -> tuple[np.ndarray, np.ndarray | None]:
        """``(x, y)`` of a split of the experiment's ``data.h5`` (``y`` None when unlabelled)."""
        from tasks.data.h5store import read_split

        arrays = read_split(self.data_file, split)
        return arrays["x"], arrays.get("y")

    @property
    def metrics(self) -> list[dict[str, float]]:
        """Per-epoch training metrics from ``metrics.csv`` (``epoch`` as an int)."""
        rows = read_metrics(
            confined(self._directory / METRICS_FILE, self._directory, root_resolved=True)
        )
        return [{**row, "epoch": int(row["epoch"])} if "epoch" in row else row for row in rows]

    @property
    def evaluations(self) -> list[Evaluation]:
        """Every finished Evaluate of this experiment, oldest first.

        Raises:
            CorruptArtifactError: an evaluation's ``metrics.json`` is damaged.
        """
        self.require_finished()
        found = []
        for marker in sorted((self._directory / EVAL_DIR).glob(f"*/{SUCCESS}")):
            folder = confined(marker.parent, self._directory, root_resolved=True)
            record = EvalRecord.read(folder).require()
            found.append(
                Evaluation(
                    name=folder.name,
                    directory=folder,
                    split=str(record.split),
                    checkpoint=record.checkpoint if record.checkpoint is not None else "best",
                    rows=record.rows,
                    metrics={
                        k: float("nan") if v is None else v for k, v in record.metrics.items()
                    },
                )
            )
        return sorted(found, key=lambda e: (e.directory / SUCCESS).stat().st_mtime)

    def checkpoint(self, which: str | int) -> Experiment:
        """Another view of the same experiment at ``"best"``, ``"last"`` or an epoch."""
        self.require_finished()
        return type(self)._view(self._directory, which, self.code_free)

    @classmethod
    def _view(cls, directory: Path, checkpoint: str | int, code_free: bool) -> Experiment:
        view = cls.__new__(cls)
        Experiment.__init__(view, directory, checkpoint=checkpoint, code_free=code_free)
        return view

    # -- weights and the model ------------------------------------------------------------

    def weights_path(self, checkpoint: str | int = "best") -> Path:
        """The weights file for ``best``, ``last`` or an epoch number.

        Raises:
            ExperimentNotFoundError: no such checkpoint was stored (the stored epochs are
                listed; older epochs may have been pruned).
        """
        suffix = self.backend.weights_suffix
        at = checkpoint_name(checkpoint)
        if isinstance(at, str):
            path = self._directory / MODEL_DIR / f"{at}{suffix}"
        else:
            stored = committed(self._directory)
            matches = [c.path for c in stored if c.epoch == at]
            if not matches:
                raise ExperimentNotFoundError(
                    f"{self._directory} has no checkpoint of epoch {at}; stored epochs: "
                    f"{[c.epoch for c in stored]}"
                )
            path = matches[0]
        if not path.is_file():
            raise ExperimentNotFoundError(f"{path} does not exist; is the experiment finished?")
        return confined(path, self._directory, root_resolved=True)

    def build_model(self, checkpoint: str | int = "best") -> Any:
        """Rebuild the model through its registered builder and load the stored weights."""
        self.require_intact()
        return self._build_checked(checkpoint)

    def _build_checked(self, checkpoint: str | int) -> Any:
        """:meth:`build_model` for a caller that has just run :meth:`require_intact`."""
        from tasks.registry import get_entry

        model_cfg = self._read_config()["model"]
        entry = get_entry(
            "model",
            model_cfg["builder"],
            model_cfg["framework"],
            where=f"stored config {self._directory / CONFIG_FILE}",
        )
        model = self.backend.build(
            entry,
            copy_plain(model_cfg["params"]),  # a builder may change what it is given
            self.meta,
            seed=None,  # the stored weights replace the initial ones
            inputs=self.inputs,
        )
        self.backend.load_weights(model, self.weights_path(checkpoint))
        return model

    def export_path(self) -> Path | None:
        """The code-free export Train wrote (``run.json`` ``export.file``), or None.

        Raises:
            CorruptArtifactError: ``run.json`` is damaged or points outside the experiment.
        """
        export = self.run.require().export
        if not export.ok or export.file is None:
            return None
        path = confined(self._directory / export.file, self._directory, root_resolved=True)
        return path if path.exists() else None  # a file (.pt2) or a SavedModel folder

    def code_drift(self) -> list[Drift]:
        """Roles (loader, builder, objective) whose code is not provably the trained code.

        A role whose current entry cannot be found is left out (rebuilding reports that
        itself); one whose fingerprint is unknown on either side counts as changed.

        Raises:
            ConfigError: a configured plugin module cannot be imported.
        """
        # The record as of its file's version, shared: only read here, never handed out.
        run = memoised_read(
            "run.json", [str(self._directory / RUN_FILE)], lambda: RunRecord.read(self._directory)
        )
        drifts = code_drift(run.code, live_lookup(self.framework))
        return [d for d in drifts if d.kind != "gone"]

    @cached_property
    def model(self) -> Any:
        """The model, ready for inference (loaded on first use).

        A torch ``nn.Module`` in eval mode or a ``keras.Model``, rebuilt through the
        registered builder with the stored weights. With ``code_free=True`` it is the
        callable the export loads to (torch: ``.module`` holds the exported module).

        Raises:
            ExperimentError: the model cannot be rebuilt (its builder is gone); the message
                says that ``code_free=True`` loads the export instead.

        Warns:
            CodeDriftWarning: the builder/loader/objective source changed since training.
        """
        self.require_intact()
        if self.code_free:
            return self._load_export()
        drift: list[Drift] = []
        try:
            drift = self.code_drift()
            if drift:
                changed = ", ".join(f"{d.role} {d.now}" for d in drift)
                warnings.warn(
                    CodeDriftWarning(
                        f"the model code changed since {self._directory} was trained: {changed}; "
                        "loading the stored weights into the current code (use code_free=True "
                        "for the model exactly as trained)"
                    ),
                    stacklevel=2,
                )
            model = self._build_checked(self._at)  # checked above
        except (ConfigError, ImportError) as err:
            # No silent fallback to the export: loading it is the caller's explicit choice.
            raise ExperimentError(
                f"the model of {self._directory} cannot be rebuilt ({err}); to load its "
                "code-free export instead, pass code_free=True"
            ) from err
        except CorruptArtifactError as err:
            if not any(d.role == "builder" for d in drift):
                raise
            now = next(d.now for d in drift if d.role == "builder")
            # Still a CorruptArtifactError naming the file, with the likelier cause added.
            raise CorruptArtifactError(
                f"{err}; the builder {now} changed since training, so the stored weights may "
                "not fit it any more: load the experiment with code_free=True"
            ) from err
        return self.backend.for_inference(model)

    def _load_export(self) -> Any:
        self.require_intact()
        path = self.export_path()
        if path is None and self.run.export.deferred:
            self._export_now()
            path = self.export_path()
        export = self.run.export
        if path is None:
            raise ExperimentNotFoundError(
                f"{self._directory} has no code-free export "
                f"({export.error or 'it was not written'})"
            )
        exported_at = export.checkpoint if export.checkpoint is not None else "last"
        if self._at != exported_at:
            raise ExperimentError(
                f"the code-free export of {self._directory} holds the {exported_at!r} weights, "
                f"not checkpoint {self._at!r}"
            )
        self._runner = self.backend.load_export(path, self.inputs)
        return getattr(self._runner, "module", self._runner)

    def _export_now(self) -> None:
        """Write the export a sweep deferred (best weights, else last) and record it.

        Needs the model's builder this once; run under the experiment's lock, so two
        processes loading it at once export it once.

        Raises:
            ExperimentError: the model cannot be rebuilt or exported (the message says why).
        """
        from tasks.store.atomic import atomic_path
        from tasks.store.lock import FolderLock

        with FolderLock.of(self._directory).hold():
            run = RunRecord.read(self._directory).require()
            if not run.export.ok:
                checkpoint = "best" if self.weights_path("best").is_file() else "last"
                model_dir = self._directory / MODEL_DIR
                try:
                    model = self.build_model(checkpoint)
                    with atomic_path(model_dir / self.backend.export_name) as tmp:
                        self.backend.export(model, self.meta, tmp, self.inputs)
                except (ConfigError, ImportError, OSError) as err:
                    raise ExperimentError(
                        f"{self._directory}: its code-free export was deferred (a sweep) and "
                        f"cannot be written now ({err}); load it with its builder instead"
                    ) from err
                raw = dict(run.raw)
                raw["export"] = {
                    "ok": True,
                    "file": f"{MODEL_DIR}/{self.backend.export_name}",
                    "checkpoint": checkpoint,
                }
                RunRecord.write(self._directory, raw)
        self.__dict__.pop("run", None)  # re-read the updated record

    def predict(self, x: Any, batch_size: int | None = None, device: str = "cpu") -> Any:
        """Run the model on ``x`` in batches: numpy in, numpy out.

        Args:
            x: inputs shaped like the training data's ``x`` (rows first); cast to its dtype.
                A model with several inputs (model config ``inputs``) takes a dict of arrays
                named as those inputs.
            batch_size: rows per batch (default: the train config's batch size).
            device: where to run the full model (the export always runs on the CPU).

        Returns:
            The model's output structure as numpy: an array, or a dict / tuple of arrays for
            models with several outputs.

        Raises:
            DataError: an input is missing or does not have the per-row shape the model was
                trained on.
        """
        from tasks.outputs import concat_outputs

        self.require_intact()
        arrays = self._input_arrays(x)
        size = int(batch_size or self.config["train"]["batch_size"])
        rows = len(next(iter(arrays.values())))
        batches = (
            {name: arr[i : i + size] for name, arr in arrays.items()} for i in range(0, rows, size)
        )
        model = self.model
        if self._runner is not None:
            return concat_outputs([self._runner(batch) for batch in batches])
        return self.backend.predict(model, batches, device, self.inputs)

    def _input_arrays(self, x: Any) -> dict[str, np.ndarray]:
        """``x`` as ``{input name: array}``, cast and checked against the training data."""
        import numpy as np

        meta, inputs = self.meta, self.inputs
        if isinstance(x, Mapping):
            missing = [name for name in inputs if name not in x]
            if missing:
                raise DataError(
                    f"predict got arrays {sorted(x)} but the model of {self._directory} takes "
                    f"inputs {list(inputs)}; add {missing}"
                )
            given = {name: x[name] for name in inputs}
        elif len(inputs) == 1:
            given = {inputs[0]: x}
        else:
            raise DataError(
                f"the model of {self._directory} takes several inputs {list(inputs)}; pass a "
                "dict of arrays named as them"
            )
        arrays: dict[str, np.ndarray] = {}
        for name, value in given.items():
            spec = meta.arrays.get(name, {})
            arr = np.asarray(value, dtype=spec.get("dtype")) if spec else np.asarray(value)
            shape = tuple(spec["shape"]) if spec else meta.input_shape
            if arr.shape[1:] != shape:
                raise DataError(
                    f"predict got {name!r} of shape {arr.shape}; {self._directory} was trained "
                    f"on rows of shape {shape}, so pass an array of shape "
                    f"(n, {', '.join(map(str, shape))})"
                )
            arrays[name] = arr
        if len({len(a) for a in arrays.values()}) > 1:
            raise DataError(f"predict got inputs of different lengths for {list(arrays)}")
        return arrays

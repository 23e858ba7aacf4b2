"""LoadTrained: restore a trained experiment from its directory alone, in scripts and notebooks.

One class is both things a notebook needs:

* a **view of a finished experiment** — ``LoadTrained(path).model``, ``.predict(x)``,
  ``.metrics`` … — that follows only what the experiment stored (``config.yaml``,
  ``run.json``, weights, ``data.h5``), so the original config files may be gone, the
  working directory anywhere and the results tree moved to another machine;
* a **Luigi task**: ``luigi.build([LoadTrained(data_config=..., model_config=...)])``
  requires the :class:`~tasks.train.Train` those configs describe, so it trains the model
  when it is missing and does nothing when it is there.

It is a :class:`luigi.Task` subclass whose parameters are the task parameters (an
experiment path, or the configs), and whose Python-side accessors load lazily: building
the object reads no weights and imports neither torch nor TensorFlow; ``.model`` and
``.predict`` do, once, on first use.

Which calls may start training: only ``luigi.build([...])`` on a LoadTrained made from
configs, and ``LoadTrained.from_configs(..., build=True)``. Everything else only reads.
"""

from __future__ import annotations

import difflib
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import luigi

from tasks.base import CachedParams, _FreshInstances
from tasks.config.resolve import format_overrides, parse_overrides
from tasks.data.h5safe import open_checked
from tasks.data.h5store import read_split
from tasks.errors import (
    ConfigError,
    CorruptArtifactError,
    DataError,
    ExperimentError,
    ExperimentNotFoundError,
)
from tasks.experiment import StoredExperiment, confined
from tasks.layout import CONFIG_FILE, EVAL_DIR, METRICS_FILE, SUCCESS
from tasks.metrics_log import read_metrics
from tasks.outputs import concat_outputs
from tasks.settings import forge
from tasks.train import Train

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CodeDriftWarning", "Evaluation", "ExportFallbackWarning", "LoadTrained"]

_TRAIN_LEVELS = ("data", "model", "train")
_SHOWN = 5


class CodeDriftWarning(UserWarning):
    """The loader, builder or objective source changed since the experiment was trained."""


class ExportFallbackWarning(UserWarning):
    """Kept for compatibility: Forge no longer falls back to the export on its own."""


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

        path = confined(self.directory / "predictions.h5", self.directory)
        try:
            with open_checked(path) as fh:
                return {name: np.asarray(data) for name, data in fh["outputs"].items()}
        except (OSError, KeyError) as err:
            raise CorruptArtifactError(f"{path} cannot be read: {err}") from err


def _experiments_under(root: Path) -> list[Path]:
    """Experiment directories (holding ``config.yaml``) at most three levels below ``root``."""
    if not root.is_dir():
        return []
    found: set[Path] = set()
    for pattern in (CONFIG_FILE, f"*/{CONFIG_FILE}", f"*/*/{CONFIG_FILE}", f"*/*/*/{CONFIG_FILE}"):
        try:
            found.update(p.parent.resolve() for p in root.glob(pattern))
        except OSError:
            continue
    return sorted(p for p in found if (p / SUCCESS).is_file())


def _closest(target: str, candidates: Iterable[Path]) -> str:
    """A message tail listing the candidates most similar to ``target``."""
    pool = sorted(set(candidates))
    if not pool:
        return "no finished experiments were found nearby"
    ranked = sorted(
        pool, key=lambda p: difflib.SequenceMatcher(None, target, str(p)).ratio(), reverse=True
    )
    shown = "\n  ".join(str(p) for p in ranked[:_SHOWN])
    more = f"\n  ... and {len(pool) - _SHOWN} more" if len(pool) > _SHOWN else ""
    return f"closest finished experiments:\n  {shown}{more}"


def _search_roots(start: Path) -> list[Path]:
    """The nearest existing folder above ``start`` and the configured results directory."""
    roots = []
    ancestor = start
    while not ancestor.is_dir() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor != ancestor.parent:  # never scan a whole file system
        roots.append(ancestor)
    roots.append(Path(forge().results_dir).resolve())
    return roots


def find_experiment(path_or_prefix: str | os.PathLike[str]) -> Path:
    """The experiment directory a path, or a unique prefix of one, names.

    Args:
        path_or_prefix: an experiment directory (``<results>/<data>-<h>/<model>-<h>/<train>-<h>``)
            or the start of one, e.g. ``results/digits-8f`` when it leads to one experiment.

    Returns:
        The experiment directory, absolute.

    Raises:
        ExperimentNotFoundError: nothing or several finished experiments match; the message
            lists the closest ones.
    """
    given = Path(path_or_prefix).expanduser()
    target = given.resolve()
    if (target / CONFIG_FILE).is_file():
        return target
    roots = _search_roots(target)
    candidates = {p for root in roots for p in _experiments_under(root)}
    matches = sorted(p for p in candidates if str(p).startswith(str(target)))
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        shown = "\n  ".join(str(p) for p in matches[:_SHOWN])
        raise ExperimentNotFoundError(
            f"{given} matches {len(matches)} experiments; give a longer prefix or the full "
            f"directory:\n  {shown}"
        )
    raise ExperimentNotFoundError(
        f"{given} is neither an experiment directory nor the prefix of one; "
        + _closest(str(target), candidates)
    )


def _overrides_text(overrides: str | Mapping[str, Any] | Sequence[str] | None) -> str:
    """``"train.epochs=3 ..."`` from a string, a ``{"train.epochs": 3}`` mapping or a list."""
    if overrides is None:
        return ""
    if isinstance(overrides, str):
        return overrides
    if isinstance(overrides, Mapping):
        return " ".join(
            f"{key}={json.dumps(value, separators=(',', ':'))}" for key, value in overrides.items()
        )
    return " ".join(str(item) for item in overrides)


def _checkpoint_name(value: str | int) -> str | int:
    text = str(value).strip()
    if text in ("best", "last"):
        return text
    if text.isdigit():
        return int(text)
    raise ConfigError(f"checkpoint must be 'best', 'last' or an epoch number, not {value!r}")


class LoadTrained(CachedParams, luigi.Task, metaclass=_FreshInstances):
    """A trained experiment, ready for inference — and the Luigi task that makes sure it exists.

    Make one from an experiment directory (or a unique prefix of one)::

        exp = LoadTrained("results/digits-1a2b/mlp_torch-3c4d/default-5e6f")
        exp.predict(x)

    or from the configs that produce it, with :meth:`from_configs`. Nothing is loaded until
    an accessor needs it; constructing reads at most a few small files and imports no
    framework. Only ``luigi.build([LoadTrained(data_config=..., ...)])`` and
    ``from_configs(..., build=True)`` may start training.

    Args:
        path_or_prefix: experiment directory, or a prefix naming exactly one.
        checkpoint: ``"best"`` (default), ``"last"`` or an epoch number.
        code_free: use the code-free export (``model/model.onnx`` / SavedModel) instead of
            rebuilding through the registered builder. Without it, a builder that can no
            longer be imported is an :class:`ExperimentError` saying to pass ``code_free=True``.
        **params: the Luigi parameters ``data_config``, ``model_config``, ``train_config``,
            ``overrides`` and ``results_dir`` when no path is given.

    Raises:
        ConfigError: neither or both of a path and configs were given, or a config is invalid.
        ExperimentNotFoundError: the path names no experiment (lists the closest ones).
    """

    path_or_prefix = luigi.OptionalParameter(
        default=None, description="Experiment directory, or a prefix naming exactly one."
    )
    at_checkpoint = luigi.Parameter(
        default="best", description="Checkpoint to load: best, last or an epoch number."
    )
    code_free = luigi.BoolParameter(
        default=False, description="Load the code-free export instead of rebuilding the model."
    )
    data_config = luigi.OptionalParameter(default=None, description="Data config YAML.")
    model_config = luigi.OptionalParameter(default=None, description="Model config YAML.")
    train_config = luigi.OptionalParameter(
        default=None, description="Train config YAML; omitted: the built-in defaults."
    )
    overrides = luigi.Parameter(
        default="", description='Whitespace-separated "section.key=value" pairs.'
    )
    results_dir = luigi.OptionalParameter(
        default=None, description="Results directory (default: [forge] results_dir)."
    )

    def __init__(
        self,
        path_or_prefix: str | os.PathLike[str] | None = None,
        checkpoint: str | int | None = None,
        code_free: bool = False,
        **params: Any,
    ) -> None:
        if checkpoint is not None:
            params["at_checkpoint"] = str(checkpoint)
        if path_or_prefix is not None:
            params["path_or_prefix"] = os.fspath(path_or_prefix)
        super().__init__(code_free=code_free, **params)
        self._at: str | int = _checkpoint_name(self.at_checkpoint)
        has_configs = bool(self.data_config or self.model_config)
        self._train: Train | None = None
        if self.path_or_prefix is not None:
            if has_configs:
                raise ConfigError(
                    "LoadTrained takes either an experiment path or data/model configs, not both"
                )
            self._directory = find_experiment(self.path_or_prefix)
        elif self.data_config and self.model_config:
            text = format_overrides(parse_overrides(self.overrides), _TRAIN_LEVELS)
            # Parameters come from mixins, which Luigi's dataclass_transform does not see.
            self._train = Train(  # type: ignore[call-arg]
                data_config=self.data_config,
                model_config=self.model_config,
                train_config=self.train_config,
                overrides=text,
                results_dir=self.results_dir,
            )
            self._directory = self._train.directory.resolve()
        else:
            raise ConfigError(
                "LoadTrained needs an experiment path, e.g. LoadTrained('results/.../default-"
                "5e6f'), or both data_config and model_config (LoadTrained.from_configs)"
            )

    @classmethod
    def from_configs(
        cls,
        data_config: str | os.PathLike[str],
        model_config: str | os.PathLike[str],
        train_config: str | os.PathLike[str] | None = None,
        overrides: str | Mapping[str, Any] | Sequence[str] | None = None,
        results_dir: str | os.PathLike[str] | None = None,
        *,
        build: bool = False,
        checkpoint: str | int = "best",
        code_free: bool = False,
    ) -> LoadTrained:
        """The experiment these configs produce (as Train would compute its directory).

        Args:
            data_config, model_config, train_config: config files, as for Train.
            overrides: ``"train.epochs=3"``, ``{"train.epochs": 3}`` or ``["train.epochs=3"]``.
            results_dir: results directory (default: ``[forge] results_dir``).
            build: **may train**: run ``luigi.build`` for the Train first (local scheduler),
                so a missing experiment is trained and an existing one reused.
            checkpoint, code_free: as for :class:`LoadTrained`.

        Raises:
            ConfigError: a config or override is invalid.
            ExperimentNotFoundError: ``build=False`` and no finished experiment exists.
            ExperimentError: ``build=True`` and training failed.
        """
        task = cls(
            checkpoint=checkpoint,
            code_free=code_free,
            data_config=os.fspath(data_config),
            model_config=os.fspath(model_config),
            train_config=os.fspath(train_config) if train_config is not None else None,
            overrides=_overrides_text(overrides),
            results_dir=os.fspath(results_dir) if results_dir is not None else None,
        )
        if build and not task.complete():
            if not luigi.build([task], local_scheduler=True) or not task.complete():
                raise ExperimentError(
                    f"training {task.directory} failed; see the log above and "
                    f"{task.directory / 'train.log'}"
                )
        task._require_finished()
        return task

    # -- Luigi side --------------------------------------------------------------------

    def requires(self) -> Train | list[Train]:
        return [self._train] if self._train is not None else []

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.directory / SUCCESS))

    def run(self) -> None:
        # Only reached for a path whose Train never finished: nothing to build it from here.
        self._require_finished()

    # -- the experiment ----------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The experiment directory (absolute)."""
        return self._directory

    def _require_finished(self) -> None:
        if (self._directory / SUCCESS).is_file():
            return
        if self._train is not None:
            root = self._train.results_root.resolve()
            raise ExperimentNotFoundError(
                f"these configs have no finished experiment (expected {self._directory}); "
                "train it with LoadTrained.from_configs(..., build=True) or "
                "luigi.build([LoadTrained(...)]); "
                + _closest(str(self._directory), _experiments_under(root))
            )
        raise ExperimentNotFoundError(
            f"{self._directory} is not finished (no {SUCCESS}); rerun its Train with the "
            "parameters in its params.json"
        )

    @cached_property
    def experiment(self) -> StoredExperiment:
        """The stored experiment files (config, run record, weights paths)."""
        self._require_finished()
        return StoredExperiment(self._directory)

    @property
    def config(self) -> dict[str, Any]:
        """The stored resolved config: ``{"data": ..., "model": ..., "train": ...}``."""
        return self.experiment.config

    @property
    def framework(self) -> str:
        """``"torch"`` or ``"tensorflow"``."""
        return self.experiment.framework

    def data(self, split: str = "test") -> tuple[np.ndarray, np.ndarray | None]:
        """``(x, y)`` of a split of the experiment's ``data.h5`` (``y`` None when unlabelled)."""
        arrays = read_split(self.experiment.data_file, split)
        return arrays["x"], arrays.get("y")

    @property
    def metrics(self) -> list[dict[str, float]]:
        """Per-epoch training metrics from ``metrics.csv`` (``epoch`` as an int)."""
        rows = read_metrics(confined(self._directory / METRICS_FILE, self._directory))
        return [{**row, "epoch": int(row["epoch"])} if "epoch" in row else row for row in rows]

    @property
    def evaluations(self) -> list[Evaluation]:
        """Every finished Evaluate of this experiment, oldest first."""
        self._require_finished()
        found = []
        for directory in sorted((self._directory / EVAL_DIR).glob(f"*/{SUCCESS}")):
            folder = confined(directory.parent, self._directory)
            try:
                record = json.loads((folder / "metrics.json").read_text())
            except (OSError, ValueError) as err:
                raise CorruptArtifactError(
                    f"{folder / 'metrics.json'} cannot be read: {err}"
                ) from err
            found.append(
                Evaluation(
                    name=folder.name,
                    directory=folder,
                    split=str(record.get("split")),
                    checkpoint=record.get("checkpoint", "best"),
                    rows=int(record.get("rows", 0)),
                    metrics={k: float(v) for k, v in record.get("metrics", {}).items()},
                )
            )
        return sorted(found, key=lambda e: (e.directory / SUCCESS).stat().st_mtime)

    def checkpoint(self, which: str | int) -> LoadTrained:
        """Another view of the same experiment at ``"best"``, ``"last"`` or an epoch."""
        self._require_finished()
        _checkpoint_name(which)
        return LoadTrained(self._directory, checkpoint=which, code_free=self.code_free)

    # -- the model ---------------------------------------------------------------------

    @cached_property
    def model(self) -> Any:
        """The model, ready for inference (loaded on first use).

        A torch ``nn.Module`` in eval mode or a ``keras.Model``, rebuilt through the
        registered builder with the stored weights. With ``code_free=True`` it is what the
        export loads to (torch: an ``onnxruntime.InferenceSession``).

        Warns:
            CodeDriftWarning: the builder/loader/objective source changed since training.

        Raises:
            ExperimentError: the builder cannot be imported any more (pass ``code_free=True``).
        """
        if self.code_free:
            return self._load_export(reason=None)
        experiment = self.experiment
        drift: dict[str, tuple[str, str]] = {}
        try:
            drift = experiment.code_drift()
            if drift:
                changed = ", ".join(f"{role} {now}" for role, (_, now) in sorted(drift.items()))
                warnings.warn(
                    CodeDriftWarning(
                        f"the model code changed since {self._directory} was trained: {changed}; "
                        "loading the stored weights into the current code (use code_free=True "
                        "for the model exactly as trained)"
                    ),
                    stacklevel=2,
                )
            model = experiment.build_model(self._at)
        except (ConfigError, ImportError) as err:
            # Never switch to the export silently: which artefact runs is the caller's choice.
            raise ExperimentError(
                f"the model of {self._directory} cannot be rebuilt ({err}); to use its "
                "code-free export instead, pass code_free=True to LoadTrained"
            ) from err
        except CorruptArtifactError as err:
            if "builder" not in drift:
                raise
            # Still a CorruptArtifactError naming the file, with the likelier cause added.
            raise CorruptArtifactError(
                f"{err}; the builder {drift['builder'][1]} changed since training, so the "
                "stored weights may not fit it any more: load the experiment with code_free=True"
            ) from err
        if self.framework == "torch":
            model.eval()
        return model

    def _load_export(self, reason: BaseException | None) -> Any:
        experiment = self.experiment
        path = experiment.export_path()
        if path is None:
            why = (experiment.run_record.get("export") or {}).get("error", "it was not written")
            message = f"{self._directory} has no code-free export ({why})"
            if reason is None:
                raise ExperimentNotFoundError(message)
            raise ExperimentError(
                f"the model of {self._directory} cannot be rebuilt ({reason}) and {message}"
            ) from reason
        exported_at = (experiment.run_record.get("export") or {}).get("checkpoint", "last")
        if self._at != exported_at:
            raise ExperimentError(
                f"the code-free export of {self._directory} holds the {exported_at!r} weights, "
                f"not checkpoint {self._at!r}"
                + (f"; and the model cannot be rebuilt: {reason}" if reason else "")
            )
        if reason is not None:
            warnings.warn(
                ExportFallbackWarning(
                    f"the model builder of {self._directory} cannot be loaded ({reason}); "
                    f"using the code-free export {path} instead"
                ),
                stacklevel=3,
            )
        self._runner = experiment.backend.load_export(path, experiment.inputs)
        return getattr(self._runner, "module", self._runner)

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
        arrays = self._input_arrays(x)
        size = int(batch_size or self.config["train"]["batch_size"])
        rows = len(next(iter(arrays.values())))
        batches = (
            {name: arr[i : i + size] for name, arr in arrays.items()} for i in range(0, rows, size)
        )
        model = self.model
        runner = getattr(self, "_runner", None)
        if runner is not None:
            return concat_outputs([runner(batch) for batch in batches])
        return self.experiment.backend.predict(model, batches, device, self.experiment.inputs)

    def _input_arrays(self, x: Any) -> dict[str, np.ndarray]:
        """``x`` as ``{input name: array}``, cast and checked against the training data."""
        import numpy as np

        meta, inputs = self.experiment.meta, self.experiment.inputs
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

"""Read a finished experiment directory and rebuild its model, without the original configs.

Everything needed is inside the experiment: ``config.yaml`` (the resolved data, model and
train configs), the weights under ``model/`` and ``checkpoints/``, and the data two levels
up. Paths are confined to the results tree of the experiment; YAML is read with
``safe_load`` and weights without unpickling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tasks.backends import get_backend
from tasks.backends.base import Backend
from tasks.checkpoints import committed
from tasks.config.schema import input_names
from tasks.config.yamlio import load_yaml_file
from tasks.data.h5store import DataMeta, read_meta
from tasks.errors import CorruptArtifactError, ExperimentNotFoundError, RegistryError
from tasks.layout import CONFIG_FILE, DATA_FILE, META_FILE, RUN_FILE, SUCCESS
from tasks.registry import Kind, get_entry
from tasks.train import MODEL_DIR

__all__ = ["StoredExperiment", "confined"]


def confined(path: Path, root: Path) -> Path:
    """``path`` resolved, after checking it stays inside ``root`` (symlinks followed).

    Raises:
        CorruptArtifactError: the path leads outside ``root``.
    """
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise CorruptArtifactError(
            f"{path} points outside the experiment's results tree ({root}); refusing to read it"
        )
    return resolved


@dataclass
class StoredExperiment:
    """A Train output directory, read back from its files."""

    directory: Path

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        if not (self.directory / CONFIG_FILE).is_file():
            raise ExperimentNotFoundError(
                f"{self.directory} is not an experiment directory (no {CONFIG_FILE}); "
                "point at <results>/<data>-<hash>/<model>-<hash>/<train>-<hash>"
            )

    @property
    def complete(self) -> bool:
        return (self.directory / SUCCESS).is_file()

    @property
    def data_dir(self) -> Path:
        return self.directory.parent.parent

    @cached_property
    def config(self) -> dict[str, Any]:
        return load_yaml_file(self.directory / CONFIG_FILE, what="stored experiment config")

    @cached_property
    def run_record(self) -> dict[str, Any]:
        try:
            return json.loads((self.directory / RUN_FILE).read_text())
        except (OSError, ValueError):
            return {}

    @property
    def framework(self) -> str:
        return str(self.config["model"]["framework"])

    @cached_property
    def backend(self) -> Backend:
        return get_backend(self.framework, asked_by=f"experiment {self.directory}")

    @property
    def data_file(self) -> Path:
        return confined(self.data_dir / DATA_FILE, self.data_dir)

    @cached_property
    def meta(self) -> DataMeta:
        # meta.json (written by PrepareData beside data.h5) is cheaper to read than HDF5.
        record = self.data_dir / META_FILE
        try:
            return DataMeta.from_dict(json.loads(confined(record, self.data_dir).read_text()))
        except (OSError, ValueError, KeyError):
            return read_meta(self.data_file)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The data arrays passed to the model (model config ``inputs``, default ``x``)."""
        return input_names(self.config["model"])

    def weights_path(self, checkpoint: str | int = "best") -> Path:
        """The weights file for ``best``, ``last`` or an epoch number.

        Raises:
            ExperimentNotFoundError: no such checkpoint was stored.
        """
        suffix = self.backend.weights_suffix
        if checkpoint in ("best", "last"):
            path = self.directory / MODEL_DIR / f"{checkpoint}{suffix}"
        else:
            epoch = int(checkpoint)
            matches = [c.path for c in committed(self.directory) if c.epoch == epoch]
            if not matches:
                stored = [c.epoch for c in committed(self.directory)]
                raise ExperimentNotFoundError(
                    f"{self.directory} has no checkpoint of epoch {epoch}; stored epochs: {stored}"
                )
            path = matches[0]
        if not path.is_file():
            raise ExperimentNotFoundError(f"{path} does not exist; is the experiment finished?")
        return confined(path, self.directory)

    def build_model(self, checkpoint: str | int = "best") -> Any:
        """Rebuild the model through its registered builder and load the stored weights."""
        model_cfg = self.config["model"]
        entry = get_entry(
            "model",
            model_cfg["builder"],
            model_cfg["framework"],
            where=f"stored config {self.directory / CONFIG_FILE}",
        )
        model = self.backend.build(
            entry,
            model_cfg["params"],
            self.meta,
            seed=None,  # the stored weights replace the initial ones
            inputs=self.inputs,
        )
        self.backend.load_weights(model, self.weights_path(checkpoint))
        return model

    def export_path(self) -> Path | None:
        """The code-free export Train wrote (``run.json`` ``export.file``), or None.

        Raises:
            CorruptArtifactError: ``run.json`` points outside the experiment directory.
        """
        export = self.run_record.get("export") or {}
        if not export.get("ok") or not isinstance(export.get("file"), str):
            return None
        path = confined(self.directory / export["file"], self.directory)
        return path if path.exists() else None  # a file (.pt2) or a SavedModel folder

    def code_drift(self) -> dict[str, tuple[str, str]]:
        """Roles (loader, builder, objective) whose source changed since training.

        Compares the fingerprints Train stored in ``run.json`` with the source of what is
        registered under the same names now. A role whose current entry cannot be found is
        left out (rebuilding reports that itself); one whose fingerprint is unknown on either
        side counts as changed, because nothing vouches that it is the same code.

        Returns:
            role → (qualified name at training time, qualified name now).

        Raises:
            ConfigError: a configured plugin module cannot be imported.
        """
        stored = self.run_record.get("code") or {}
        framework = self.framework
        kinds: dict[str, tuple[Kind, str | None]] = {
            "loader": ("dataset", None),
            "builder": ("model", framework),
            "objective": ("objective", framework),
        }
        drift: dict[str, tuple[str, str]] = {}
        for role, record in stored.items():
            if role not in kinds or not isinstance(record, dict):
                continue
            kind, fw = kinds[role]
            try:
                entry = get_entry(kind, str(record.get("name")), fw)
            except RegistryError:
                continue
            then, now = record.get("fingerprint"), entry.fingerprint()
            if then is None or now is None or then != now:
                drift[role] = (str(record.get("qualname")), entry.qualname)
        return drift

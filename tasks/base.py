"""Parameters, config resolution, directories and locking shared by every Forge task.

A task resolves its configs when it is constructed, so a bad config fails before any
work (and before anything is written). Its output is the ``_SUCCESS`` marker of its
directory, written last: a step that crashed half-way never looks complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.util
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import luigi
from luigi.task_register import Register

from tasks import cli_logging
from tasks.atomic import atomic_write_text, clean_leftovers, storage_errors
from tasks.cli.index import note_completed
from tasks.config.checks import check_sections
from tasks.config.resolve import (
    Resolved,
    format_overrides,
    parse_overrides,
    resolve_sections,
)
from tasks.errors import AlreadyRunningError, BackendUnavailableError
from tasks.layout import EVAL_DIR, SUCCESS, child_dir, claim_dir
from tasks.settings import ensure_retcodes, forge

__all__ = [
    "CachedParams",
    "DataParams",
    "EvalParams",
    "ForgeTask",
    "ModelParams",
    "Spec",
    "TrainParams",
]

logger = logging.getLogger("forge")

cli_logging.install()
ensure_retcodes()


@dataclass(frozen=True)
class Spec:
    """The resolved sections a task needs, and the directories they map to."""

    sections: dict[str, Resolved]
    dirs: dict[str, Path]

    def __getitem__(self, section: str) -> Resolved:
        return self.sections[section]


_LEVELS = ("data", "model", "train", "eval")


@functools.cache
def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (asked once per process)."""
    return importlib.util.find_spec(module) is not None


def resolve_spec(
    levels: tuple[str, ...], paths: dict[str, str | None], overrides_text: str, results_dir: Path
) -> Spec:
    """Resolve ``levels`` of config and compute each level's directory.

    Raises:
        ConfigError: any config, key or override is invalid.
        BackendUnavailableError: the model config's framework is not installed.
    """
    overrides = parse_overrides(overrides_text)
    sections = resolve_sections(levels, dict(paths), overrides)  # memoised on the files' stat
    check_sections(sections)
    if "model" in sections:
        framework = sections["model"].config["framework"]
        if not _installed("tensorflow" if framework == "tensorflow" else "torch"):
            raise BackendUnavailableError(
                f"model config {sections['model'].source} asks for framework {framework!r}, "
                f"which is not installed; install it with `pip install -e .[{framework}]`"
            )
    dirs: dict[str, Path] = {}
    parent = results_dir
    for level in levels:
        resolved = sections[level]
        if level == "eval":
            parent = parent / EVAL_DIR
        parent = child_dir(parent, resolved.name, resolved.digest)
        dirs[level] = parent
    return Spec(sections, dirs)


class _FreshInstances(Register):
    """Forge tasks resolve file *contents* when constructed. Luigi's instance cache keys on
    parameter strings only, so it would hand back an instance resolved from an older
    version of a config edited since (e.g. in a notebook). Build a fresh instance instead;
    resolution itself is memoised on the files' stat, so this stays cheap."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return super(Register, cls).__call__(*args, **kwargs)


class CachedParams:
    """Mixin for Luigi tasks: Luigi's parameter list computed once per class.

    A plain mixin, not a ``luigi.Task``, so Luigi does not register it as a task.
    """

    @classmethod
    def get_params(cls) -> list[tuple[str, luigi.Parameter]]:
        """Luigi's parameter list, computed once per class.

        Luigi rebuilds it with ``dir(cls)`` three times per task construction, which is most
        of the cost of checking thousands of finished experiments. Forge's step classes
        get no parameters after they are defined, so the list is kept per class.
        """
        cached = cls.__dict__.get("_forge_params")
        if cached is None:
            cached = super().get_params()  # type: ignore[misc]  # luigi.Task's, via the MRO
            type.__setattr__(cls, "_forge_params", cached)
        return list(cached)


class DataParams:
    """Parameters of every Forge task."""

    data_config = luigi.Parameter(description="Data config YAML (configs/data/*.yaml).")
    overrides = luigi.Parameter(
        default="",
        description='Whitespace-separated "section.key=value" pairs, e.g. "train.epochs=3".',
    )
    results_dir = luigi.OptionalParameter(
        default=None, description="Results directory (default: [forge] results_dir, else results)."
    )


class ModelParams(DataParams):
    model_config = luigi.Parameter(description="Model config YAML (configs/model/*.yaml).")


class TrainParams(ModelParams):
    train_config = luigi.OptionalParameter(
        default=None, description="Train config YAML; omitted: the built-in defaults."
    )


class EvalParams(TrainParams):
    eval_config = luigi.OptionalParameter(
        default=None, description="Eval config YAML; omitted: the built-in defaults."
    )


class ForgeTask(CachedParams, luigi.Task, metaclass=_FreshInstances):
    """Base of the pipeline steps: resolves configs on construction, commits with a marker."""

    level: ClassVar[str]
    # Declared by the parameter mixins (DataParams, ...) every concrete step inherits.
    overrides: str
    results_dir: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        levels = _LEVELS[: _LEVELS.index(self.level) + 1]
        paths = {level: getattr(self, f"{level}_config", None) for level in levels}
        self.spec = resolve_spec(levels, paths, self.overrides, self.results_root)

    @property
    def results_root(self) -> Path:
        return Path(self.results_dir or forge().results_dir)

    @property
    def directory(self) -> Path:
        """The directory this step owns."""
        return self.spec.dirs[self.level]

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.directory / SUCCESS))

    def upstream_kwargs(self, level: str) -> dict[str, Any]:
        """Parameters for the upstream task at ``level``, with only its overrides.

        Passing only the relevant overrides in canonical form gives every consumer of a
        shared upstream step the same Luigi task id, so it is scheduled once.
        """
        levels = _LEVELS[: _LEVELS.index(level) + 1]
        kwargs: dict[str, Any] = {"results_dir": self.results_dir}
        for lv in levels:
            kwargs[f"{lv}_config"] = getattr(self, f"{lv}_config")
        kwargs["overrides"] = format_overrides(parse_overrides(self.overrides), levels)
        return kwargs

    def run(self) -> None:
        directory = self.directory
        with storage_errors(str(directory)):
            claim_dir(directory, self.spec[self.level].digest)
        with self._lock(directory):
            if self.complete():
                logger.info("%s was completed by another process meanwhile", self)
                return
            clean_leftovers(directory)
            self.produce(directory)
            atomic_write_text(directory / SUCCESS, "")
            note_completed(self.results_root, directory)  # refresh `forge ls`'s index; never raises

    def produce(self, directory: Path) -> None:
        """Write this step's files into ``directory`` (the marker is written afterwards)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _lock(self, directory: Path) -> Iterator[None]:
        """Hold an exclusive lock on ``directory`` for this step.

        ``flock`` locks vanish with the process that held them, so a killed run never
        leaves a stale lock behind.
        """
        with storage_errors(str(directory / ".lock")):
            fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + float(forge().lock_timeout)
            announced = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise AlreadyRunningError(
                            f"{self.task_family} for {directory} is already running in another "
                            "process; wait for it to finish or stop it"
                        ) from None
                    if not announced:
                        logger.warning(
                            "%s is already running in another process; waiting for it", directory
                        )
                        announced = True
                    time.sleep(0.5)
            yield
        finally:
            os.close(fd)

"""Parameters, config resolution, directories and locking shared by every Forge task.

A task resolves its configs when it is constructed, so a bad config fails before any
work (and before anything is written). Its output is the ``_SUCCESS`` marker of its
directory, written last: a step that crashed half-way never looks complete.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import luigi
from luigi.task_register import Register

from tasks.backends import installed
from tasks.config.checks import check_sections
from tasks.config.resolve import (
    Resolved,
    format_overrides,
    parse_overrides,
    resolve_sections,
)
from tasks.errors import AlreadyRunningError, BackendUnavailableError
from tasks.settings import forge
from tasks.stages import sections_upto, stage
from tasks.store.atomic import (
    clean_leftovers,
    commit_marker,
    set_sync_method,
    storage_errors,
    synced_at_end,
)
from tasks.store.index import note_completed
from tasks.store.layout import child_dir, claim_dir
from tasks.store.lock import FolderLock
from tasks.store.names import DIGEST_FILE, SUCCESS

__all__ = [
    "CachedParams",
    "DataParams",
    "EvalParams",
    "ForgeTask",
    "FreshInstances",
    "ModelParams",
    "Spec",
    "TrainParams",
    "resolve_spec",
]

logger = logging.getLogger("forge")


@dataclass(frozen=True)
class Spec:
    """The resolved sections a task needs, and the directories they map to."""

    sections: dict[str, Resolved]
    dirs: dict[str, Path]

    def __getitem__(self, section: str) -> Resolved:
        return self.sections[section]


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
        if not installed(framework):
            raise BackendUnavailableError(
                f"model config {sections['model'].source} asks for framework {framework!r}, "
                f"which is not installed; install it with `pip install -e .[{framework}]`"
            )
    dirs: dict[str, Path] = {}
    parent = results_dir
    for level in levels:
        resolved = sections[level]
        subdir = stage(level).subdir
        if subdir:
            parent = parent / subdir
        parent = child_dir(parent, resolved.name, resolved.digest)
        dirs[level] = parent
    return Spec(sections, dirs)


class FreshInstances(Register):
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
        of the cost of checking thousands of finished experiments. Forge's task classes
        (steps and sweep tasks) get no parameters after they are defined, so the list is
        kept per class.
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


class ForgeTask(CachedParams, luigi.Task, metaclass=FreshInstances):
    """Base of the pipeline steps: resolves configs on construction, commits with a marker."""

    level: ClassVar[str]
    # Whether the last run() of this object wrote the step (False: another process had
    # completed it meanwhile, or it failed); what a sweep shard records as work it did.
    produced: bool = False
    # Declared by the parameter mixins (DataParams, ...) every concrete step inherits.
    overrides: str
    results_dir: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        levels = sections_upto(self.level)
        paths = {level: getattr(self, stage(level).config_param, None) for level in levels}
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
        levels = sections_upto(level)
        kwargs: dict[str, Any] = {"results_dir": self.results_dir}
        for lv in levels:
            param = stage(lv).config_param
            kwargs[param] = getattr(self, param)
        kwargs["overrides"] = format_overrides(parse_overrides(self.overrides), levels)
        return kwargs

    def run(self) -> None:
        self.produced = False
        directory = self.directory
        digest = self.spec[self.level].digest
        set_sync_method(forge().sync)
        # Every file the step writes is synced once, together, before its marker.
        with synced_at_end() as barrier:
            with storage_errors(str(directory)):
                claim_dir(directory, digest)
            lock = FolderLock.of(directory)
            with lock.hold(
                float(forge().lock_timeout),
                busy=lambda: AlreadyRunningError(
                    f"{self.task_family} for {directory} is already running in another "
                    "process; wait for it to finish or stop it"
                ),
                on_wait=lambda: logger.warning(
                    "%s is already running in another process; waiting for it", directory
                ),
            ):
                if self.complete():
                    logger.info("%s was completed by another process meanwhile", self)
                    return
                with storage_errors(str(directory)):
                    claim_dir(directory, digest)  # a failed run before us may have removed it
                clean_leftovers(directory)
                try:
                    self.produce(directory)
                    commit_marker(barrier, directory / SUCCESS)
                    self.produced = True
                except BaseException:
                    if not self.resumable(directory):
                        _discard(directory)
                    raise
        note_completed(self.results_root, directory)  # refresh `forge ls`'s index; never raises

    def produce(self, directory: Path) -> None:
        """Write this step's files into ``directory`` (the marker is written afterwards)."""
        raise NotImplementedError

    def resumable(self, directory: Path) -> bool:
        """Whether a failed run left progress worth keeping in ``directory`` (Train: a
        committed checkpoint). A step without any is removed, so a failure leaves no
        folder behind."""
        return False


def _discard(directory: Path) -> None:
    """Remove the folder of a step that failed and has nothing to resume from.

    Only a folder that holds no other step's folder (one with its own ``.digest``, directly
    or under ``eval/``) is removed: a failed rerun never takes downstream work with it.
    """
    try:
        if any(directory.glob(f"*/{DIGEST_FILE}")) or any(directory.glob(f"*/*/{DIGEST_FILE}")):
            return
        shutil.rmtree(directory)
    except OSError as err:  # never mask the step's own error
        logger.debug("could not remove %s after its step failed: %s", directory, err)

"""Typed records of the JSON files Forge stores, and tolerant readers for them.

A reader never raises on a damaged file: it returns the record with ``damage`` set to a
one-line reason (``"run.json: not valid JSON (line 3)"``), so that one damaged experiment
is shown as damaged by ``forge ls`` and the listing goes on. Callers that need the
record (LoadTrained, Evaluate) turn the damage into one clear error with
:meth:`Stored.require`. Writers go through :func:`write_json`: atomic, and always valid
JSON (non-finite floats are stored as ``null``, never as bare ``NaN``).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tasks.errors import CorruptArtifactError
from tasks.store.atomic import atomic_write_text
from tasks.store.jsonio import dumps_json
from tasks.store.names import (
    ANNOTATIONS_FILE,
    BEST_RECORD,
    CONFUSION_FILE,
    EVAL_METRICS_FILE,
    META_FILE,
    MODEL_DIR,
    PARAMS_FILE,
    RUN_FILE,
)

__all__ = [
    "AnnotationRecord",
    "BestRecord",
    "EvalRecord",
    "ExportRecord",
    "MetaRecord",
    "ParamsRecord",
    "RunRecord",
    "Stored",
    "json_text",
    "read_confusion",
    "read_json_object",
    "read_stored_bytes",
    "write_json",
]

R = TypeVar("R", bound="Stored")
# The damage reason of a file that is simply absent (an unfinished step).
MISSING = "missing"
# How a reader words a file this process may not read: a permission problem, not damage.
PERMISSION_DENIED = "permission denied"
# Stored records are small; anything far larger is not one Forge wrote.
MAX_RECORD_BYTES = 64_000_000


def read_stored_bytes(path: Path, limit: int = MAX_RECORD_BYTES) -> tuple[bytes, str | None]:
    """The bytes of the stored file ``path`` and None, or ``(b"", why)``.

    Only a regular file is read: Forge never stores a symbolic link, so one where a record
    belongs (pointing anywhere on the machine) is damage, and so is a FIFO or device that
    would block or never end. ``why`` is ``"missing"`` for an absent file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return b"", MISSING
    except OSError as err:
        if err.errno == errno.ELOOP or path.is_symlink():
            return b"", f"{path.name}: is a symbolic link, not a file Forge wrote"
        if err.errno in (errno.EACCES, errno.EPERM):
            return b"", f"{path.name}: cannot be read ({PERMISSION_DENIED})"
        return b"", f"{path.name}: cannot be read ({err.strerror or err})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return b"", f"{path.name}: is not a regular file"
        if info.st_size > limit:
            return b"", f"{path.name}: is {info.st_size} bytes, far larger than Forge writes"
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks), None
    except OSError as err:
        return b"", f"{path.name}: cannot be read ({err.strerror or err})"
    finally:
        os.close(fd)


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """``value`` as strict JSON text with one trailing newline (see :func:`dumps_json`)."""
    return dumps_json(value, indent=indent) + "\n"


def write_json(path: Path, value: Any, *, indent: int | None = 2) -> None:
    """Write ``value`` to ``path`` atomically as strict JSON (see :func:`json_text`)."""
    atomic_write_text(path, json_text(value, indent=indent))


def read_json_object(path: Path) -> tuple[dict[str, Any], str | None]:
    """The JSON object in ``path`` and None, or ``({}, why)`` when it cannot be used.

    ``why`` is ``"missing"`` for an absent file, else a one-line reason naming the file.
    """
    raw, why = read_stored_bytes(path)
    if why is not None:
        return {}, why
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return {}, f"{path.name}: not UTF-8 text"
    except ValueError as err:
        return {}, f"{path.name}: not valid JSON ({err})"
    if not isinstance(value, dict):
        return {}, f"{path.name}: holds a {type(value).__name__}, not a JSON object"
    return value, None


def _typed(raw: Mapping[str, Any], key: str, kinds: tuple[type, ...], problems: list[str]) -> Any:
    """``raw[key]`` when absent or of one of ``kinds``; else None, with the problem noted."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
        return value
    problems.append(f"{key!r} is a {type(value).__name__}")
    return None


@dataclass(frozen=True)
class Stored:
    """Base of the records: the file it came from and what is wrong with it, if anything."""

    path: Path | None = field(default=None, kw_only=True, compare=False)
    damage: str | None = field(default=None, kw_only=True, compare=False)

    @property
    def missing(self) -> bool:
        return self.damage == MISSING

    @property
    def ok(self) -> bool:
        return self.damage is None

    def require(self: R) -> R:
        """This record, or one :class:`CorruptArtifactError` line saying what is wrong.

        Raises:
            CorruptArtifactError: the file is missing, unreadable or malformed.
        """
        if self.damage is None:
            return self
        where = self.path if self.path is not None else "a stored record"
        raise CorruptArtifactError(
            f"{where} cannot be used ({self.damage}); the experiment is damaged: rerun the "
            "step that writes it, or remove the folder with `forge rm`"
        )

    @staticmethod
    def _damage(name: str, problems: list[str]) -> str | None:
        return f"{name}: " + ", ".join(problems) if problems else None


@dataclass(frozen=True)
class ExportRecord:
    """``run.json``'s ``export``: where the code-free export is, or why it is missing."""

    ok: bool = False
    file: str | None = None
    checkpoint: str | int | None = None
    error: str | None = None
    deferred: bool = False  # a sweep left it to the first code-free load


@dataclass(frozen=True)
class RunRecord(Stored):
    """``run.json``: the provenance of the last training attempt of an experiment."""

    status: str | None = None
    start: str | None = None
    end: str | None = None
    duration_s: float | None = None
    host: str | None = None
    framework: str | None = None
    seed: int | None = None
    device: str | None = None
    error: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] = field(default_factory=dict)
    code: dict[str, dict[str, Any]] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    export: ExportRecord = field(default_factory=ExportRecord)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def read(cls, directory: Path) -> RunRecord:
        """The run record of the experiment ``directory``; never raises."""
        path = Path(directory) / RUN_FILE
        raw, damage = read_json_object(path)
        if damage is not None:
            return cls(path=path, damage=damage)
        return cls.from_dict(raw, path)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], path: Path | None = None) -> RunRecord:
        problems: list[str] = []
        text = (str,)
        number = (int, float)
        mappings = {}
        for key in ("versions", "git", "code", "digests", "export", "environment"):
            value = raw.get(key)
            if value is not None and not isinstance(value, dict):
                problems.append(f"{key!r} is a {type(value).__name__}, not a mapping")
                value = None
            mappings[key] = dict(value or {})
        code = {k: v for k, v in mappings["code"].items() if isinstance(v, dict)}
        if len(code) != len(mappings["code"]):
            problems.append("'code' has entries that are not mappings")
        export_raw = mappings["export"]
        export = ExportRecord(
            ok=export_raw.get("ok") is True,
            file=export_raw.get("file") if isinstance(export_raw.get("file"), str) else None,
            checkpoint=export_raw.get("checkpoint"),
            error=str(export_raw["error"]) if export_raw.get("error") is not None else None,
            deferred=export_raw.get("deferred") is True,
        )
        record = cls(
            status=_typed(raw, "status", text, problems),
            start=_typed(raw, "start", text, problems),
            end=_typed(raw, "end", text, problems),
            duration_s=_typed(raw, "duration_s", number, problems),
            host=_typed(raw, "host", text, problems),
            framework=_typed(raw, "framework", text, problems),
            seed=_typed(raw, "seed", (int,), problems),
            device=_typed(raw, "device", text, problems),
            error=_typed(raw, "error", text, problems),
            versions=mappings["versions"],
            git=mappings["git"],
            code=code,
            digests={k: v for k, v in mappings["digests"].items() if isinstance(v, str)},
            export=export,
            environment=mappings["environment"],
            raw=dict(raw),
            path=path,
        )
        if problems:
            return dataclasses.replace(record, damage=cls._damage(RUN_FILE, problems))
        return record

    @staticmethod
    def write(directory: Path, run: Mapping[str, Any]) -> None:
        """Write ``run`` as the experiment's ``run.json`` (atomically, strict JSON)."""
        write_json(Path(directory) / RUN_FILE, dict(run))


@dataclass(frozen=True)
class EvalRecord(Stored):
    """An evaluation's ``metrics.json``: split, checkpoint, row count and metric values."""

    split: str | None = None
    checkpoint: str | int | None = None
    rows: int = 0
    metrics: dict[str, float | None] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def read(cls, eval_dir: Path) -> EvalRecord:
        """The record of the evaluation folder ``eval_dir``; never raises."""
        path = Path(eval_dir) / EVAL_METRICS_FILE
        raw, damage = read_json_object(path)
        if damage is not None:
            return cls(path=path, damage=damage)
        problems: list[str] = []
        metrics_raw = raw.get("metrics")
        if metrics_raw is not None and not isinstance(metrics_raw, dict):
            problems.append(f"'metrics' is a {type(metrics_raw).__name__}, not a mapping")
            metrics_raw = {}
        metrics: dict[str, float | None] = {}
        for name, value in (metrics_raw or {}).items():
            if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
                metrics[str(name)] = None if value is None else float(value)
            else:
                problems.append(f"metric {name!r} is a {type(value).__name__}")
        checkpoint = raw.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str | int):
            problems.append(f"'checkpoint' is a {type(checkpoint).__name__}")
            checkpoint = None
        rows = raw.get("rows", 0)
        if not isinstance(rows, int) or isinstance(rows, bool):
            problems.append(f"'rows' is a {type(rows).__name__}")
            rows = 0
        return cls(
            split=_typed(raw, "split", (str,), problems),
            checkpoint=checkpoint,
            rows=rows,
            metrics=metrics,
            raw=raw,
            path=path,
            damage=cls._damage(EVAL_METRICS_FILE, problems),
        )


@dataclass(frozen=True)
class BestRecord(Stored):
    """``model/best.json``: which epoch's weights are the best, by which metric."""

    epoch: int | None = None
    monitor: str | None = None
    mode: str | None = None
    value: float | None = None

    @classmethod
    def read(cls, experiment_dir: Path) -> BestRecord:
        """The best-epoch record of an experiment; never raises."""
        path = Path(experiment_dir) / MODEL_DIR / BEST_RECORD
        raw, damage = read_json_object(path)
        if damage is not None:
            return cls(path=path, damage=damage)
        problems: list[str] = []
        value = _typed(raw, "value", (int, float), problems)
        return cls(
            epoch=_typed(raw, "epoch", (int,), problems),
            monitor=_typed(raw, "monitor", (str,), problems),
            mode=_typed(raw, "mode", (str,), problems),
            value=None if value is None else float(value),
            path=path,
            damage=cls._damage(BEST_RECORD, problems),
        )

    def write(self, experiment_dir: Path) -> None:
        """Write this record as the experiment's ``model/best.json``."""
        record = {"epoch": self.epoch, "monitor": self.monitor, "mode": self.mode}
        write_json(
            Path(experiment_dir) / MODEL_DIR / BEST_RECORD,
            {**record, "value": self.value},
            indent=None,
        )


@dataclass(frozen=True)
class AnnotationRecord(Stored):
    """``annotations.json``: an experiment's tags and note (never part of its identity).

    Written by ``forge tag``/``untag``/``note`` only (see :mod:`tasks.store.annotations`);
    an absent file is simply "no tags, no note".
    """

    tags: tuple[str, ...] = ()
    note: str | None = None
    updated: str | None = None

    @classmethod
    def read(cls, experiment_dir: Path) -> AnnotationRecord:
        """The annotations of an experiment; never raises (absent: an empty record)."""
        path = Path(experiment_dir) / ANNOTATIONS_FILE
        raw, damage = read_json_object(path)
        if damage is not None:
            return cls(path=path, damage=damage)
        problems: list[str] = []
        tags_raw = raw.get("tags")
        if tags_raw is not None and not isinstance(tags_raw, list):
            problems.append(f"'tags' is a {type(tags_raw).__name__}, not a list")
            tags_raw = []
        tags = tuple(t for t in tags_raw or [] if isinstance(t, str))
        if len(tags) != len(tags_raw or []):
            problems.append("'tags' holds entries that are not strings")
        return cls(
            tags=tags,
            note=_typed(raw, "note", (str,), problems),
            updated=_typed(raw, "updated", (str,), problems),
            path=path,
            damage=cls._damage(ANNOTATIONS_FILE, problems),
        )

    def write(self, experiment_dir: Path) -> None:
        """Write this record as the experiment's ``annotations.json`` (atomically)."""
        value = {"tags": list(self.tags), "note": self.note, "updated": self.updated}
        write_json(Path(experiment_dir) / ANNOTATIONS_FILE, value)


def read_confusion(eval_dir: Path) -> list[list[int]] | None:
    """The confusion matrix Evaluate stored (rows: true class, columns: predicted), or
    None when there is none or it is not a square matrix of counts; never raises."""
    raw, damage = read_json_object(Path(eval_dir) / CONFUSION_FILE)
    matrix = raw.get("matrix") if damage is None else None
    if not isinstance(matrix, list) or not matrix:
        return None
    size = len(matrix)
    ok = all(
        isinstance(r, list) and len(r) == size and all(type(c) is int and c >= 0 for c in r)
        for r in matrix
    )
    return matrix if ok else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class MetaRecord(Stored):
    """A data step's ``meta.json``: the arrays' per-row shapes and dtypes, the task, the
    class count and the rows of each split (what a model is built for)."""

    arrays: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_classes: int | None = None
    task: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def read(cls, data_dir: Path) -> MetaRecord:
        """The record of the data step folder ``data_dir``; never raises."""
        path = Path(data_dir) / META_FILE
        raw, damage = read_json_object(path)
        if damage is not None:
            return cls(path=path, damage=damage)
        problems: list[str] = []
        arrays: dict[str, dict[str, Any]] = {}
        arrays_raw = raw.get("arrays")
        if not isinstance(arrays_raw, dict) or not arrays_raw:
            problems.append(f"'arrays' is a {type(arrays_raw).__name__}, not a mapping")
            arrays_raw = {}
        for name, spec in arrays_raw.items():
            shape = spec.get("shape") if isinstance(spec, dict) else None
            dtype = spec.get("dtype") if isinstance(spec, dict) else None
            if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
                problems.append(f"'arrays.{name}.shape' is not a list of integers")
            elif not isinstance(dtype, str):
                problems.append(f"'arrays.{name}.dtype' is not a string")
            else:
                arrays[str(name)] = {"shape": list(shape), "dtype": dtype}
        rows_raw = raw.get("rows")
        if not isinstance(rows_raw, dict) or not all(_is_int(v) for v in rows_raw.values()):
            problems.append("'rows' is not a mapping of split to row count")
            rows_raw = {}
        num_classes = raw.get("num_classes")
        if num_classes is not None and not _is_int(num_classes):
            problems.append(f"'num_classes' is a {type(num_classes).__name__}")
            num_classes = None
        task = raw.get("task")
        if not isinstance(task, str):
            problems.append(f"'task' is a {type(task).__name__}, not a string")
            task = None
        return cls(
            arrays=arrays,
            num_classes=num_classes,
            task=task,
            rows=dict(rows_raw),
            raw=raw,
            path=path,
            damage=cls._damage(META_FILE, problems),
        )


@dataclass(frozen=True)
class ParamsRecord(Stored):
    """An experiment's ``params.json``: the Luigi parameters (config files as given, the
    overrides) it was made with, so ``forge status`` can resolve them again."""

    configs: dict[str, str | None] = field(default_factory=dict)
    overrides: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def read(cls, directory: Path) -> ParamsRecord:
        """The parameters of the experiment ``directory``; never raises."""
        path = Path(directory) / PARAMS_FILE
        raw, damage = read_json_object(path)
        if damage is not None:
            return cls(path=path, damage=damage)
        problems: list[str] = []
        configs: dict[str, str | None] = {}
        for key in raw:
            if key.endswith("_config"):
                configs[key] = _typed(raw, key, (str,), problems)
        overrides = _typed(raw, "overrides", (str,), problems) or ""
        _typed(raw, "task", (str,), problems)
        _typed(raw, "results_dir", (str,), problems)
        return cls(
            configs=configs,
            overrides=overrides,
            raw=raw,
            path=path,
            damage=cls._damage(PARAMS_FILE, problems),
        )

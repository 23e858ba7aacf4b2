"""Read one experiment directory into a flat, JSON-ready summary record.

A record is what ``forge ls`` shows and what the index stores: names, framework, status,
epochs, best validation value, evaluation metrics, the flattened resolved config and the
provenance needed for staleness checks. Reading never raises on a damaged directory: a
half-written experiment simply comes out as ``incomplete``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.config.yamlio import load_yaml_file
from tasks.errors import ConfigError
from tasks.stages import TRAIN_SECTIONS
from tasks.store.lock import lock_held
from tasks.store.metrics_log import read_metrics_checked
from tasks.store.names import (
    BEST_RECORD,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    DIGEST_FILE,
    EVAL_CONFIG_FILE,
    EVAL_DIR,
    META_FILE,
    METRICS_FILE,
    MODEL_DIR,
    PARAMS_FILE,
    RUN_FILE,
    SUCCESS,
)
from tasks.store.records import (
    MISSING,
    AnnotationRecord,
    BestRecord,
    EvalRecord,
    MetaRecord,
    ParamsRecord,
    RunRecord,
    read_stored_bytes,
)
from tasks.store.versions import RACY_NS, memoised_read

__all__ = [
    "DELTA_KEYS",
    "STATUSES",
    "Record",
    "damage_inputs",
    "experiment_damage",
    "experiment_id",
    "flatten",
    "read_config",
    "read_stored_config",
    "stored_text",
    "read_record",
    "record_signature",
    "shared_signature",
    "step_name",
    "still_valid",
    "unflatten",
]

Record = dict[str, Any]
STATUSES = ("done", "pruned", "running", "failed", "incomplete", "stale", "damaged")
# run.json's end_reason of a training a search stopped early: complete, shown as such.
PRUNED = "pruned"
# Set on records restored from the index: the config keys where they differ from its base.
DELTA_KEYS = "_delta_keys"
# What a step folder's ``.digest`` holds: a full SHA-256 in hex.
_DIGEST = re.compile(r"[0-9a-f]{64}")


def step_name(directory_name: str) -> str:
    """The config name of a ``<name>-<hash>`` step directory."""
    return directory_name.rsplit("-", 1)[0] if "-" in directory_name else directory_name


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"params": {"hidden": [64]}}}`` → ``{"model.params.hidden": [64]}``.

    Lists stay values: a list of hidden sizes is one hyperparameter, not several.
    """
    flat: dict[str, Any] = {}
    if isinstance(config, dict) and config:
        for key, value in config.items():
            flat.update(flatten(value, f"{prefix}{key}."))
    elif prefix:
        flat[prefix[:-1]] = config
    return flat


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten` for keys without dots inside their parts."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return nested


def read_stored_config(path: Path) -> tuple[dict[str, Any], str | None]:
    """A stored config (through the capped safe loader) and None, or ``({}, why)``."""
    if path.is_symlink():
        return {}, f"{path.name}: is a symbolic link, not a file Forge wrote"
    if not path.is_file():
        return {}, MISSING
    try:
        return load_yaml_file(path, what="stored config"), None
    except ConfigError as err:
        return {}, f"{path.name}: {err}"


def stored_text(path: Path) -> str:
    """A stored text file for display: its text, or a note saying why it cannot be shown."""
    raw, why = read_stored_bytes(path)
    if why == MISSING:
        return f"(no {path.name}: the run stopped before writing it)\n"
    try:
        return raw.decode("utf-8") if why is None else f"(damaged {why})\n"
    except UnicodeDecodeError:
        return f"(damaged {path.name}: not UTF-8 text)\n"


def read_config(path: Path) -> dict[str, Any]:
    """A stored config, or ``{}`` when it is missing or damaged."""
    return read_stored_config(path)[0]


def _read_digest(directory: Path) -> str | None:
    """The full digest a step folder claims, or None when it is missing or malformed."""
    raw, why = read_stored_bytes(directory / DIGEST_FILE, limit=1024)
    text = raw.decode("ascii", errors="replace").strip()
    return text if why is None and _DIGEST.fullmatch(text) else None


def _digest_damage(directory: Path, claimed: str | None) -> str | None:
    """Why a step folder's ``.digest`` is unusable (missing, truncated, another folder's)."""
    raw, why = read_stored_bytes(directory / DIGEST_FILE, limit=1024)
    where = f"{directory.name}/{DIGEST_FILE}"
    if why is not None:
        return f"{where} is missing" if why == MISSING else f"{directory.name}/{why}"
    text = raw.decode("ascii", errors="replace").strip()
    if not _DIGEST.fullmatch(text):
        return f"{where}: not a full digest (truncated or overwritten)"
    prefix = directory.name.rsplit("-", 1)[-1]
    if not text.startswith(prefix) or (claimed is not None and claimed != text):
        return f"{where}: does not match the folder it is in"
    return None


def _text_damage(path: Path) -> str | None:
    """Why a stored text file cannot be shown: missing, not a plain file, not UTF-8."""
    raw, why = read_stored_bytes(path)
    if why is not None:
        return f"{path.name} is missing" if why == MISSING else why
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"{path.name}: not UTF-8 text"
    return None


# Damage of files shared by many experiments (a data step's meta.json, the .digest of a
# data or model step) by (file, mtime, size, inode, what it is checked against):
# `forge ls --rebuild` over thousands of experiments reads each of them once.
_shared_cache: dict[tuple[Any, ...], str | None] = {}


def _shared_damage(
    folder: Path, name: str, check: Callable[[Path], str | None], against: Any = None
) -> str | None:
    """``check(folder)``, remembered while ``folder / name`` stays the same file."""
    try:
        info = os.lstat(folder / name)
    except OSError:
        return check(folder)
    key = (str(folder), name, info.st_mtime_ns, info.st_size, info.st_ino, against)
    if key not in _shared_cache:
        if len(_shared_cache) > 50_000:
            _shared_cache.clear()
        _shared_cache[key] = check(folder)
    return _shared_cache[key]


def _meta_damage(data_dir: Path) -> str | None:
    record = MetaRecord.read(data_dir)
    return None if record.missing else record.damage


def _symlinks(directory: Path) -> list[str]:
    """Entries of a step folder (and of its own sub-folders) that are symbolic links:
    Forge never stores one, so each is damage (it could point anywhere on the machine)."""
    found: list[str] = []
    for folder in (directory, directory / MODEL_DIR, directory / CHECKPOINT_DIR):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        found += [
            f"{Path(entry.path).relative_to(directory)} is a symbolic link, not a file Forge wrote"
            for entry in entries
            if entry.is_symlink()
        ]
    return found


def _own_damage(
    directory: Path,
    run: RunRecord,
    config: dict[str, Any],
    config_damage: str | None,
    metrics_damage: str | None,
    best: BestRecord | None = None,
) -> list[str]:
    """What is wrong with the files a finished experiment and its model rely on: its
    records, its config, its ``metrics.csv``, the ``.digest`` of each step it is made of,
    the data step's ``meta.json``, and any symbolic link in place of a stored file."""
    damage: list[str] = []
    for name, why in ((RUN_FILE, run.damage), (CONFIG_FILE, config_damage)):
        if why == MISSING:
            damage.append(f"{name} is missing")
        elif why is not None:
            damage.append(why)
    if config_damage is None:
        for section in TRAIN_SECTIONS:
            if not isinstance(config.get(section), dict):
                kind = type(config.get(section)).__name__
                damage.append(f"{CONFIG_FILE}: '{section}' is a {kind}, not a mapping")
        model = config.get("model")
        if isinstance(model, dict) and not isinstance(model.get("framework"), str):
            damage.append(f"{CONFIG_FILE}: 'model.framework' is not a string")
    if metrics_damage is not None:
        damage.append(metrics_damage)
    for record in (ParamsRecord.read(directory), best or BestRecord.read(directory)):
        if record.damage is not None and not record.missing:
            damage.append(record.damage)
    meta = _shared_damage(directory.parent.parent, META_FILE, _meta_damage)
    if meta is not None:
        damage.append(meta)
    folders = {"data": directory.parent.parent, "model": directory.parent, "train": directory}
    for section, folder in folders.items():
        claimed = run.digests.get(section)
        why = _shared_damage(
            folder, DIGEST_FILE, functools.partial(_digest_damage, claimed=claimed), claimed
        )
        if why is not None:
            damage.append(why)
    damage += _symlinks(directory)
    return damage


# What experiment_damage reads: (folders up from the experiment, name) of its records, of
# the data and model steps' shared files, and of the folders whose entries it checks for
# symbolic links ("" is the folder itself). A folder's mtime moves when an entry is added,
# removed or renamed in it; a file's ctime when it is written, truncated or chmod-ed.
_DAMAGE_INPUTS = (
    (0, CONFIG_FILE),
    (0, METRICS_FILE),
    (0, RUN_FILE),
    (0, PARAMS_FILE),
    (0, f"{MODEL_DIR}/{BEST_RECORD}"),
    (0, DIGEST_FILE),
    (0, ""),
    (0, MODEL_DIR),
    (0, CHECKPOINT_DIR),
    (1, DIGEST_FILE),
    (2, DIGEST_FILE),
    (2, META_FILE),
)


def damage_inputs(directory: Path) -> list[str]:
    """Every path :func:`experiment_damage` reads or lists for ``directory``."""
    own = str(directory)
    model = os.path.dirname(own) or "."
    folders = (own, model, os.path.dirname(model) or ".")
    return [f"{folders[up]}/{name}" if name else folders[up] for up, name in _DAMAGE_INPUTS]


def experiment_damage(directory: Path) -> str | None:
    """Why the finished experiment ``directory`` cannot be trusted, in one line, or None.

    The same check ``forge ls`` shows as the ``damaged`` status (evaluations aside: each is
    its own step); :class:`~tasks.experiment.Experiment` refuses to load a model from an
    experiment for which this is not None. Remembered per version of the files it reads
    (:mod:`tasks.store.versions`: a dozen ``lstat`` calls instead of reading and parsing
    them), so loading the same experiment again costs little and never misses a change.
    """
    directory = Path(directory)

    def check() -> str | None:
        config, config_damage = read_stored_config(directory / CONFIG_FILE)
        metrics_damage = read_metrics_checked(directory / METRICS_FILE)[1]
        run = RunRecord.read(directory)
        damage = _own_damage(directory, run, config, config_damage, metrics_damage)
        return "; ".join(damage) or None

    return memoised_read("experiment damage", damage_inputs(directory), check)


def experiment_id(root: Path, rel: str, run: RunRecord) -> str:
    """A stable 12-hex id: the hash of the data, model and train digests (content identity).

    Falls back to the hash of the relative path when a digest is missing (a crash before
    the step claimed its directory).
    """
    directory = root / rel
    folders = {"data": directory.parent.parent, "model": directory.parent, "train": directory}
    parts = [run.digests.get(s) or _read_digest(folders[s]) for s in TRAIN_SECTIONS]
    basis = "/".join(parts) if all(parts) else f"path:{rel}"  # type: ignore[arg-type]
    return hashlib.sha256(basis.encode()).hexdigest()[:12]


def _evaluations(directory: Path, damage: list[str]) -> list[dict[str, Any]]:
    evals: list[dict[str, Any]] = []
    try:
        entries = sorted(
            (e for e in os.scandir(directory / EVAL_DIR) if e.is_dir() and e.name[0] != "."),
            key=lambda e: (step_name(e.name) != "default", e.name),
        )
    except OSError:
        return evals
    for entry in entries:
        path = Path(entry.path)
        done = (path / SUCCESS).is_file()
        record = EvalRecord.read(path) if done else EvalRecord()
        if done:
            why = record.damage
            if why is None:  # only whether it is there and text: `forge ls` never parses it
                why = _text_damage(path / EVAL_CONFIG_FILE)
            if why is not None:
                damage.append(f"{EVAL_DIR}/{entry.name}/{why}")
        evals.append(
            {
                "name": entry.name,
                "status": "done" if done else ("running" if lock_held(path) else "incomplete"),
                "split": record.split,
                "checkpoint": record.checkpoint,
                "metrics": dict(record.metrics),
            }
        )
    return evals


def _best(
    stored: BestRecord, rows: list[dict[str, float]], train: dict[str, Any]
) -> dict[str, Any]:
    if stored.ok and stored.value is not None:
        return {"metric": stored.monitor, "value": stored.value, "epoch": stored.epoch}
    monitor = train.get("monitor")
    monitor = monitor if isinstance(monitor, str) else "val_loss"  # a damaged config too
    mode = train.get("mode", "min")
    scored = [r for r in rows if monitor in r]
    if not scored:
        return {"metric": monitor, "value": None, "epoch": None}
    pick = min if mode == "min" else max
    row = pick(scored, key=lambda r: r[monitor])
    return {"metric": monitor, "value": row[monitor], "epoch": int(row.get("epoch", 0))}


def _status(directory: Path, run: RunRecord, damage: list[str]) -> str:
    """done, pruned (complete, stopped early by its search), damaged (complete, but a
    record cannot be read), running, failed or incomplete (a half-written step is simply
    incomplete, whatever its torn files say)."""
    if (directory / SUCCESS).is_file():
        if damage:
            return "damaged"
        return PRUNED if run.raw.get("end_reason") == PRUNED else "done"
    if lock_held(directory):
        return "running"
    if run.status == "failed" and run.raw.get("end_reason") != "preempted":
        return "failed"  # a preempted run is not a failure: rerunning resumes it
    return "incomplete"


def shared_signature(directory: str, memo: dict[str, list[int]] | None = None) -> list[int]:
    """The version of the files an experiment shares with the others of its data and model
    folders: ``(mtime_ns, size, inode)`` of the data step's ``meta.json`` and ``.digest`` and
    of the model step's ``.digest`` (zeros for a missing one). A record's damage depends on
    them, and they may be replaced or rewritten without the experiment folder noticing.

    Args:
        directory: the experiment folder (a plain string).
        memo: per-listing memo by folder, so each shared file is looked at once per
            listing, not once per experiment (10,000 experiments share ~100 folders).
    """
    model = directory.rsplit("/", 1)[0]
    data = model.rsplit("/", 1)[0]
    sig: list[int] = []
    for folder, names in ((data, (META_FILE, DIGEST_FILE)), (model, (DIGEST_FILE,))):
        cached = memo.get(folder) if memo is not None else None
        if cached is None:
            cached = []
            for name in names:
                try:
                    st = os.stat(f"{folder}/{name}", follow_symlinks=False)
                    cached += [st.st_mtime_ns, st.st_size, st.st_ino]
                except OSError:
                    cached += [0, 0, 0]
            if memo is not None:
                memo[folder] = cached
        sig += cached
    return sig


def record_signature(
    directory: str, evals: list[str], memo: dict[str, list[int]] | None = None
) -> list[int]:
    """What changes whenever a record's content can: the mtimes of the experiment directory
    (files renamed into it), its ``eval/`` folder (evaluations added) and each evaluation
    folder, then the :func:`shared_signature` of the data and model steps' files.
    Atomic writes rename into these directories, so their mtimes move on every commit
    (``forge tag``/``note`` included: ``annotations.json`` is renamed into the experiment
    directory, so a tagged experiment is re-read without a signature of its own).
    (Plain strings and ``os.stat``: this runs 30,000 times for 10,000 experiments.)"""
    sig: list[int] = []
    eval_dir = f"{directory}/{EVAL_DIR}"
    for path in (directory, eval_dir, *(f"{eval_dir}/{e}" for e in evals)):
        try:
            sig.append(os.stat(path).st_mtime_ns)
        except OSError:
            sig.append(0)
    return sig + shared_signature(directory, memo)


def _newest_mtime(sig: list[int], evals: int) -> int:
    """The newest mtime in a :func:`record_signature` (its sizes and inodes left out)."""
    own = sig[: evals + 2]
    shared = sig[evals + 2 :: 3]
    return max([*own, *shared], default=0)


def read_record(root: Path, rel: str, *, settled: bool = False) -> Record:
    """Summarise the experiment ``root / rel``; never raises on missing or damaged files.

    Args:
        root: the results directory.
        rel: the experiment's path relative to ``root`` (``data/model/train`` names).
        settled: the caller just committed this directory under its lock, so nothing can
            have changed it within the timestamp granularity (the task-completion hook).
    """
    started = time.time_ns()
    directory = root / rel
    damage: list[str] = []
    run = RunRecord.read(directory)
    config, config_damage = read_stored_config(directory / CONFIG_FILE)
    rows, metrics_damage = read_metrics_checked(directory / METRICS_FILE)
    best = BestRecord.read(directory)
    if (directory / SUCCESS).is_file():  # only damage once the experiment claims to be complete
        damage += _own_damage(directory, run, config, config_damage, metrics_damage, best)
    train: dict[str, Any] = config["train"] if isinstance(config.get("train"), dict) else {}
    model: dict[str, Any] = config["model"] if isinstance(config.get("model"), dict) else {}
    evals = _evaluations(directory, damage)
    status = _status(directory, run, damage)
    # After the status: a torn annotations.json is worth showing, not worth calling the
    # results themselves damaged.
    notes = AnnotationRecord.read(directory)
    if notes.damage and not notes.missing:
        damage.append(notes.damage)
    metrics: dict[str, Any] = {}
    for ev in evals:
        for name, value in ev["metrics"].items():
            metrics.setdefault(f"{ev['split']}.{name}", value)
    parts = rel.split("/")
    git = run.git
    eval_names = [e["name"] for e in evals]
    sig = record_signature(str(directory), eval_names)
    return {
        "id": experiment_id(root, rel, run),
        "path": rel,
        "data": step_name(parts[0]),
        "model": step_name(parts[1]),
        "train": step_name(parts[2]),
        "framework": model.get("framework") or run.framework,
        "status": status,
        "tags": list(notes.tags),
        "note": notes.note,
        "epochs": max((int(r.get("epoch", 0)) for r in rows), default=0),
        "epochs_total": train.get("epochs"),
        "best": _best(best, rows, train),
        "metrics": metrics,
        "evals": evals,
        "eval_names": eval_names,
        "config": flatten(config),
        "run": {
            "start": run.start,
            "end": run.end,
            "duration_s": run.duration_s,
            "host": run.host,
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "error": run.error,
        },
        "code": run.code,
        "damage": "; ".join(" ".join(why.split()) for why in damage) or None,
        "sig": sig,
        # A damaged experiment is re-read at every listing: a file restored in place (what
        # the damage message advises) changes no folder time the signature covers.
        "volatile": status not in ("done", PRUNED)
        or (not settled and _newest_mtime(sig, len(eval_names)) >= started - RACY_NS),
    }


def still_valid(root: str, record: Record, memo: dict[str, list[int]] | None = None) -> bool:
    """Whether a stored record still describes its directory (cheap: a few ``stat`` calls;
    ``memo`` shares the data and model folders' look-ups within one listing)."""
    if record.get("volatile"):
        return False
    try:
        sig = record_signature(f"{root}/{record['path']}", record["eval_names"], memo)
    except (KeyError, TypeError):
        return False
    return sig == record["sig"]

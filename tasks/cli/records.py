"""Read one experiment directory into a flat, JSON-ready summary record.

A record is what ``forge ls`` shows and what the index stores: names, framework, status,
epochs, best validation value, evaluation metrics, the flattened resolved config and the
provenance needed for staleness checks. Reading never raises on a damaged directory: a
half-written experiment simply comes out as ``incomplete``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from tasks.config.yamlio import load_yaml_file
from tasks.errors import ConfigError
from tasks.layout import (
    CONFIG_FILE,
    DIGEST_FILE,
    EVAL_DIR,
    METRICS_FILE,
    RUN_FILE,
    SUCCESS,
)
from tasks.metrics_log import read_metrics

__all__ = [
    "DELTA_KEYS",
    "STATUSES",
    "Record",
    "experiment_id",
    "flatten",
    "lock_held",
    "read_config",
    "read_record",
    "record_signature",
    "step_name",
    "still_valid",
    "unflatten",
]

Record = dict[str, Any]
STATUSES = ("done", "running", "failed", "incomplete", "stale", "damaged")
LOCK_FILE = ".lock"
# mtimes this close to "now" may still change within the file system's timestamp
# granularity, so a record built from them is re-read next time (git's "racy" rule).
RACY_NS = 1_000_000_000
# Set on records restored from the index: the config keys where they differ from its base.
DELTA_KEYS = "_delta_keys"


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


def lock_held(directory: Path) -> bool:
    """Whether a Forge task holds the ``flock`` of ``directory`` right now.

    Probes with a shared, non-blocking lock that is released at once, so a running task
    is never disturbed and a crashed one (whose lock vanished with it) reads as free.
    """
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_config(path: Path) -> dict[str, Any]:
    try:  # the capped loader: a stored alias bomb costs milliseconds, not gigabytes
        return load_yaml_file(path, what="stored experiment config")
    except ConfigError:
        return {}


def _read_digest(directory: Path) -> str | None:
    try:
        return (directory / DIGEST_FILE).read_text().strip() or None
    except OSError:
        return None


def experiment_id(root: Path, rel: str, run: dict[str, Any]) -> str:
    """A stable 12-hex id: the hash of the data, model and train digests (content identity).

    Falls back to the hash of the relative path when a digest is missing (a crash before
    the step claimed its directory).
    """
    directory = root / rel
    digests = run.get("digests") or {}
    parts = [
        digests.get("data") or _read_digest(directory.parent.parent),
        digests.get("model") or _read_digest(directory.parent),
        digests.get("train") or _read_digest(directory),
    ]
    basis = "/".join(parts) if all(parts) else f"path:{rel}"  # type: ignore[arg-type]
    return hashlib.sha256(basis.encode()).hexdigest()[:12]


def _evaluations(directory: Path) -> list[dict[str, Any]]:
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
        record = _read_json(path / "metrics.json") if done else {}
        evals.append(
            {
                "name": entry.name,
                "status": "done" if done else ("running" if lock_held(path) else "incomplete"),
                "split": record.get("split"),
                "checkpoint": record.get("checkpoint"),
                "metrics": record.get("metrics") or {},
            }
        )
    return evals


def _best(directory: Path, rows: list[dict[str, float]], train: dict[str, Any]) -> dict[str, Any]:
    stored = _read_json(directory / "model" / "best.json")
    if stored.get("value") is not None:
        return {"metric": stored.get("monitor"), "value": stored["value"], "epoch": stored["epoch"]}
    monitor = train.get("monitor", "val_loss")
    mode = train.get("mode", "min")
    scored = [r for r in rows if monitor in r]
    if not scored:
        return {"metric": monitor, "value": None, "epoch": None}
    pick = min if mode == "min" else max
    row = pick(scored, key=lambda r: r[monitor])
    return {"metric": monitor, "value": row[monitor], "epoch": int(row.get("epoch", 0))}


def _status(directory: Path, run: dict[str, Any]) -> str:
    if (directory / SUCCESS).is_file():
        return "done"
    if lock_held(directory):
        return "running"
    if run.get("status") == "failed":
        return "failed"
    return "incomplete"


def record_signature(directory: str, evals: list[str]) -> list[int]:
    """mtimes that change whenever a record's content can: the experiment directory (files
    renamed into it), its ``eval/`` folder (evaluations added) and each evaluation folder.
    Atomic writes rename into these directories, so their mtimes move on every commit.
    (Plain strings and ``os.stat``: this runs 30,000 times for 10,000 experiments.)"""
    sig: list[int] = []
    eval_dir = f"{directory}/{EVAL_DIR}"
    for path in (directory, eval_dir, *(f"{eval_dir}/{e}" for e in evals)):
        try:
            sig.append(os.stat(path).st_mtime_ns)
        except OSError:
            sig.append(0)
    return sig


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
    run = _read_json(directory / RUN_FILE)
    config = read_config(directory / CONFIG_FILE)
    train: dict[str, Any] = config["train"] if isinstance(config.get("train"), dict) else {}
    model: dict[str, Any] = config["model"] if isinstance(config.get("model"), dict) else {}
    rows = read_metrics(directory / METRICS_FILE)
    evals = _evaluations(directory)
    status = _status(directory, run)
    if status == "done" and not config:  # finished, yet its config is unreadable or capped
        status = "damaged"
    metrics: dict[str, Any] = {}
    for ev in evals:
        for name, value in ev["metrics"].items():
            metrics.setdefault(f"{ev['split']}.{name}", value)
    parts = rel.split("/")
    git = run.get("git") or {}
    eval_names = [e["name"] for e in evals]
    sig = record_signature(str(directory), eval_names)
    return {
        "id": experiment_id(root, rel, run),
        "path": rel,
        "data": step_name(parts[0]),
        "model": step_name(parts[1]),
        "train": step_name(parts[2]),
        "framework": model.get("framework") or run.get("framework"),
        "status": status,
        "epochs": max((int(r.get("epoch", 0)) for r in rows), default=0),
        "epochs_total": train.get("epochs"),
        "best": _best(directory, rows, train),
        "metrics": metrics,
        "evals": evals,
        "eval_names": eval_names,
        "config": flatten(config),
        "run": {
            "start": run.get("start"),
            "end": run.get("end"),
            "duration_s": run.get("duration_s"),
            "host": run.get("host"),
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "error": run.get("error"),
        },
        "code": run.get("code") or {},
        "sig": sig,
        "volatile": status != "done" or (not settled and max(sig) >= started - RACY_NS),
    }


def still_valid(root: str, record: Record) -> bool:
    """Whether a stored record still describes its directory (cheap: a few ``stat`` calls)."""
    if record.get("volatile"):
        return False
    try:
        sig = record_signature(f"{root}/{record['path']}", record["eval_names"])
    except (KeyError, TypeError):
        return False
    return sig == record["sig"]

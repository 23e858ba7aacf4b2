"""Find the experiments of a results directory, fast, and look one up by id or path.

The tree is ``<data>/<model>/<train>`` (see :mod:`tasks.layout`). A folder's mtime changes
exactly when an entry is added, removed or renamed in it, so the folders that list the
experiments (results root, data and model folders) are re-scanned only when their mtime
moved, and each cached record is checked with a few ``stat`` calls
(:func:`tasks.cli.records.still_valid`). Only what changed is read again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.cli.codecheck import static_fingerprint
from tasks.cli.index import load_index, save_index
from tasks.cli.records import RACY_NS, Record, read_record, still_valid
from tasks.errors import ExperimentError, ExperimentNotFoundError
from tasks.layout import DIGEST_FILE, EVAL_DIR

__all__ = ["Catalog", "default_results_dir", "find_experiment", "fresh_record", "load_catalog"]


@dataclass
class Catalog:
    """The experiments of one results directory, sorted by path."""

    root: Path
    records: list[Record] = field(default_factory=list)
    reread: int = 0  # how many records had to be read from their directories


def default_results_dir() -> Path:
    """``[forge] results_dir`` of ``luigi.cfg`` (else ``results``), as the Luigi tasks use."""
    from tasks.settings import forge

    return Path(forge().results_dir)


def _scan(path: Path) -> tuple[list[str], bool]:
    """Step folders directly under ``path``, and whether the listing can be cached."""
    names: list[str] = []
    cacheable = True
    try:
        entries = list(os.scandir(path))
    except OSError:
        return names, False
    for entry in entries:
        if entry.name.startswith(".") or entry.name == EVAL_DIR:
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        if os.path.exists(os.path.join(entry.path, DIGEST_FILE)):
            names.append(entry.name)
        else:
            cacheable = False  # maybe a step folder not yet claimed: look again next time
    return sorted(names), cacheable


def _walk(root: Path, cached: dict[str, Any], fresh: dict[str, Any], now: int) -> list[str]:
    """Relative paths of every experiment folder, reusing unchanged folder listings."""

    def children(rel: str) -> list[str]:
        path = root / rel if rel else root
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return []
        entry = cached.get(rel)
        if entry and entry.get("mtime") == mtime and mtime < now - RACY_NS:
            names: list[str] = entry["children"]
        else:
            names, cacheable = _scan(path)
            if not cacheable:
                mtime = -1
        fresh[rel] = {"mtime": mtime, "children": names}
        return names

    found: list[str] = []
    for data in children(""):
        for model in children(data):
            found.extend(f"{data}/{model}/{train}" for train in children(f"{data}/{model}"))
    return found


def mark_stale(records: list[Record]) -> None:
    """Turn ``done`` into ``stale`` where the loader/builder source changed since training."""
    current: dict[str, str | None] = {}
    for record in records:
        if record.get("status") != "done":
            continue
        reasons = []
        for role, info in (record.get("code") or {}).items():
            qualname = info.get("qualname") if isinstance(info, dict) else None
            if not qualname or not info.get("fingerprint"):
                continue
            if qualname not in current:
                current[qualname] = static_fingerprint(qualname)
            now = current[qualname]
            if now is not None and now != info["fingerprint"]:
                what = "data loader code" if role == "loader" else "model code"
                reasons.append(f"{what} changed ({role} {info.get('name')})")
        if reasons:
            record["status"] = "stale"
            record["stale_reasons"] = reasons


def load_catalog(root: Path, *, rebuild: bool = False, write: bool = True) -> Catalog:
    """Every experiment under ``root``, from the index where it is still valid.

    Args:
        root: the results directory.
        rebuild: ignore the index and read every experiment folder.
        write: store the refreshed index back (skipped silently when not writable).
    """
    root = Path(root)
    header, cached = ({}, {}) if rebuild else load_index(root)
    now = time.time_ns()
    dirs: dict[str, Any] = {}
    paths = _walk(root, header.get("dirs") or {}, dirs, now)
    records: list[Record] = []
    reread = 0
    root_text = str(root)
    for rel in paths:
        record = cached.get(rel)
        if record is None or not still_valid(root_text, record):
            record = read_record(root, rel)
            reread += 1
        records.append(record)
    # Rewrite when records changed or appended duplicates piled up. A folder mtime that
    # moved without new children only costs one re-scan of that folder next time.
    dirs_changed = any(
        entry["children"] != (header.get("dirs") or {}).get(rel, {}).get("children")
        for rel, entry in dirs.items()
    )
    piled_up = header.get("lines", 0) > len(records) + 100 + len(records) // 10
    changed = reread > 0 or len(cached) != len(records) or dirs_changed or piled_up
    if write and changed and root.is_dir():
        save_index(root, {"dirs": dirs}, {r["path"]: r for r in records})
    mark_stale(records)
    return Catalog(root, records, reread)


def fresh_record(root: Path, record: Record) -> Record:
    """``record`` read again from its folder, with evaluation details (the index keeps
    only what ``ls`` needs) and its staleness."""
    full = read_record(root, record["path"])
    mark_stale([full])
    return full


def _root_of(directory: Path) -> tuple[Path, str] | None:
    directory = directory.resolve()
    parts = directory.parts
    if len(parts) < 4:
        return None
    if not all((directory.parents[i] / DIGEST_FILE).exists() for i in (0, 1)):
        if not (directory / "config.yaml").exists():
            return None
    return directory.parents[2], "/".join(parts[-3:])


def find_experiment(ref: str, results_dir: Path | None = None) -> tuple[Catalog, Record]:
    """The experiment ``ref`` names: a folder path, or a unique prefix of its id or path.

    Raises:
        ExperimentNotFoundError: nothing matches.
        ExperimentError: the prefix matches several experiments (they are listed).
    """
    path = Path(ref)
    if path.is_dir() and (path / DIGEST_FILE).exists():
        located = _root_of(path)
        if located is not None:
            root, rel = located
            catalog = load_catalog(root)
            for record in catalog.records:
                if record["path"] == rel:
                    return catalog, record
    root = results_dir if results_dir is not None else default_results_dir()
    catalog = load_catalog(root)
    matches = [r for r in catalog.records if r["id"].startswith(ref) or r["path"].startswith(ref)]
    exact = [r for r in matches if r["id"] == ref or r["path"] == ref.rstrip("/")]
    if len(exact) == 1:
        return catalog, exact[0]
    if len(matches) == 1:
        return catalog, matches[0]
    if not matches:
        raise ExperimentNotFoundError(
            f"no experiment {ref!r} in {root}: give an experiment folder, or a prefix of an id "
            "or path that `forge ls` shows (pass --results-dir for another results directory)"
        )
    listed = ", ".join(f"{r['id'][:8]} ({r['path']})" for r in matches[:5])
    raise ExperimentError(
        f"{ref!r} matches {len(matches)} experiments: {listed}; give a longer prefix"
    )

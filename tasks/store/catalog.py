"""Find the experiments of a results directory, fast, and look one up by id or path.

The tree is ``<data>/<model>/<train>`` (see :mod:`tasks.store.layout`). A folder's mtime changes
exactly when an entry is added, removed or renamed in it, so the folders that list the
experiments (results root, data and model folders) are re-scanned only when their mtime
moved, and each cached record is checked with a few ``stat`` calls
(:func:`tasks.store.summary.still_valid`). Only what changed is read again.
"""

from __future__ import annotations

import difflib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.errors import AmbiguousExperimentError, ExperimentNotFoundError
from tasks.store.drift import code_drift, static_lookup
from tasks.store.index import load_index, save_index
from tasks.store.names import CONFIG_FILE, DIGEST_FILE, EVAL_DIR
from tasks.store.summary import RACY_NS, Record, read_record, still_valid

__all__ = [
    "Catalog",
    "default_results_dir",
    "find_experiment",
    "fresh_record",
    "load_catalog",
    "locate",
    "mark_stale",
    "results_root_of",
]

_SHOWN = 5


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
    """Turn ``done`` into ``stale`` where the loader/builder source changed since training
    (checked statically: nothing is imported)."""
    lookup = static_lookup()
    for record in records:
        if record.get("status") != "done":
            continue
        drifts = code_drift(record.get("code") or {}, lookup)
        reasons = [
            f"{'data loader' if d.role == 'loader' else 'model'} code changed ({d.role} {d.name})"
            for d in drifts
            if d.kind == "changed"
        ]
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
    shared: dict[str, list[int]] = {}  # the data and model folders' files, once each
    for rel in paths:
        record = cached.get(rel)
        if record is None or not still_valid(root_text, record, shared):
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
    # Never start an index where there are no experiments (a search that looked around
    # the working directory must not leave a .forge/ folder there).
    if write and changed and records and root.is_dir():
        save_index(root, {"dirs": dirs}, {r["path"]: r for r in records})
    mark_stale(records)
    return Catalog(root, records, reread)


def fresh_record(root: Path, record: Record) -> Record:
    """``record`` read again from its folder, with evaluation details (the index keeps
    only what ``ls`` needs) and its staleness."""
    full = read_record(root, record["path"])
    mark_stale([full])
    return full


def results_root_of(directory: Path) -> Path | None:
    """The results directory a step folder lies in: the first ancestor that is not itself a
    step folder (has no ``.digest``); None when ``directory`` is no step folder."""
    directory = Path(directory).resolve()
    if not (directory / DIGEST_FILE).exists():
        return None
    root = directory
    while (root / DIGEST_FILE).exists() or root.name == EVAL_DIR:
        if root == root.parent:
            return None
        root = root.parent
    return root


def _search_roots(target: Path, results_dir: Path | None) -> list[Path]:
    """Where a prefix may point into: the results tree around the nearest existing folder
    above ``target``, that folder itself, and the results directory."""
    roots: list[Path] = []
    ancestor = target
    while not ancestor.is_dir() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor != ancestor.parent:  # never scan a whole file system
        roots.append(results_root_of(ancestor) or ancestor)
    roots.append((results_dir if results_dir is not None else default_results_dir()).resolve())
    return list(dict.fromkeys(roots))


def _closest(target: str, candidates: list[Path]) -> str:
    """A message tail listing the candidates most similar to ``target``."""
    if not candidates:
        return "no experiments were found nearby"
    ranked = sorted(
        set(candidates),
        key=lambda p: difflib.SequenceMatcher(None, target, str(p)).ratio(),
        reverse=True,
    )
    shown = "\n  ".join(str(p) for p in ranked[:_SHOWN])
    more = f"\n  ... and {len(ranked) - _SHOWN} more" if len(ranked) > _SHOWN else ""
    return f"closest experiments:\n  {shown}{more}"


def find_experiment(
    ref: str | os.PathLike[str], results_dir: Path | None = None, *, write_index: bool = True
) -> Path:
    """The experiment folder ``ref`` names: the one way every command and LoadTrained
    resolve what a user typed.

    Args:
        ref: an experiment folder, or a unique prefix of one's path (absolute, relative to
            the working directory or to the results directory) or of its id (`forge ls`).
        results_dir: the results directory to search besides the tree around ``ref``
            (default: ``[forge] results_dir``).
        write_index: let the search refresh the results directory's index.

    Returns:
        The experiment folder, absolute and resolved (no symbolic link in it).

    Raises:
        ExperimentNotFoundError: nothing matches; the closest experiments are listed.
        AmbiguousExperimentError: several match; they are listed.
    """
    text = os.fspath(ref)
    given = Path(text).expanduser()
    if (given / CONFIG_FILE).is_file():
        return given.resolve()
    target = given.resolve()
    matches: dict[Path, bool] = {}  # folder → exact match
    seen: list[Path] = []
    roots = _search_roots(target, results_dir)
    for root in roots:
        for record in load_catalog(root, write=write_index).records:
            folder = root / record["path"]
            seen.append(folder)
            rel, rid = record["path"], record["id"]
            if rel == text.rstrip("/") or rid == text:
                matches[folder] = True
            elif (
                str(folder).startswith(str(target)) or rel.startswith(text) or rid.startswith(text)
            ):
                matches.setdefault(folder, False)
    exact = [p for p, is_exact in matches.items() if is_exact]
    if len(exact) == 1:
        return exact[0]
    if len(matches) == 1:
        return next(iter(matches))
    if not matches:
        raise ExperimentNotFoundError(
            f"no experiment {text!r} in {', '.join(map(str, roots))}: give an experiment "
            "folder, or a prefix of an id or path that `forge ls` shows (pass the results "
            "directory if it is elsewhere); " + _closest(str(target), seen)
        )
    shown = "\n  ".join(str(p) for p in sorted(matches)[:_SHOWN])
    raise AmbiguousExperimentError(
        f"{text!r} matches {len(matches)} experiments; give a longer prefix or the full "
        f"folder:\n  {shown}"
    )


def locate(directory: Path) -> tuple[Catalog, Record]:
    """The catalog of the results directory holding the experiment ``directory``, and the
    experiment's record in it.

    Raises:
        ExperimentNotFoundError: ``directory`` is not an experiment of a results tree.
    """
    directory = Path(directory).resolve()
    root = results_root_of(directory)
    if root is not None:
        rel = directory.relative_to(root).as_posix()
        catalog = load_catalog(root)
        for record in catalog.records:
            if record["path"] == rel:
                return catalog, record
    raise ExperimentNotFoundError(f"{directory} is not an experiment folder of a results tree")

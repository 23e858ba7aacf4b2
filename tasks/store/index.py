"""The per-results-directory index: ``.forge/index.jsonl``, a cache of experiment records.

The index is never the source of truth; the directories are. Each line is one record
(:mod:`tasks.store.summary`) plus the ``stat`` signature it was read under; the first line
is a header with the mtimes of the data and model folders, which tell whether new
experiments appeared. ``forge ls`` trusts a line only while its signature still matches
(the experiment's folders, and the data and model steps' shared files: a ``done`` or
``damaged`` record alike), re-reads what changed, and writes the result back atomically.
Tasks append a fresh line when they complete (:func:`note_completed`); later lines win.
Anyone can delete the file: it is rebuilt from the directories. It lives in its own
``.forge/`` folder so that rewriting it does not change the mtime of the results
directory itself.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.stages import EXPERIMENT_DEPTH, stage
from tasks.store.atomic import atomic_write_text
from tasks.store.jsonio import dumps_json
from tasks.store.lock import FolderLock
from tasks.store.names import INDEX_FILE, INDEX_LOCK_FILE
from tasks.store.summary import DELTA_KEYS, Record, read_record

__all__ = ["IndexData", "load_index", "note_completed", "save_index"]

logger = logging.getLogger("forge")

VERSION = 3  # 3: signatures include the shared data and model files
_LOCK_WAIT_S = 5.0

IndexData = tuple[dict[str, Any], dict[str, Record]]


def _lock(root: Path) -> FolderLock:
    """The index lock (waited for a little: the index is a cache, never worth blocking)."""
    return FolderLock(root / INDEX_LOCK_FILE)


def _encoder() -> Callable[[Any], str]:
    """Compact strict JSON: the plain encoder (fast, for 10,000 records), and the
    non-finite-to-null conversion only for the rare record that holds a NaN."""
    plain = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

    def encode(value: Any) -> str:
        try:
            return plain(value)
        except ValueError:
            return dumps_json(value, separators=(",", ":"))

    return encode


def _parse(lines: list[str]) -> list[Any]:
    """Parse JSON lines; one ``json.loads`` over all of them when none is torn, because the
    decoder then shares the repeated key strings (several times faster for 10,000 lines)."""
    try:
        return list(json.loads("[" + ",".join(line for line in lines if line) + "]"))
    except ValueError:
        items = []
        for line in lines:
            try:
                items.append(json.loads(line))
            except ValueError:
                continue  # a torn line: that record is simply read again from its folder
        return items


def load_index(root: Path) -> IndexData:
    """The header and the records (by relative path) of ``root``'s index; empty if absent.

    The header carries ``lines`` (how many lines were read), so callers can tell when
    appended duplicates make a rewrite worthwhile.
    """
    header: dict[str, Any] = {}
    records: dict[str, Record] = {}
    try:
        with open(root / INDEX_FILE, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return header, records
    items = _parse(lines)
    if not items or not isinstance(items[0], dict) or items[0].get("version") != VERSION:
        return header, records
    header = {**items[0], "lines": len(items) - 1}
    base = header.get("base") or {}
    for item in items[1:]:
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            records[item["path"]] = _restored(item, base)
    return header, records


def _stored(record: Record, base: dict[str, Any]) -> Record:
    """What the index keeps of a record: the config as its difference from ``base`` (a
    sweep's records then differ in a few keys, which keeps the file small and fast to
    parse); evaluation details are re-read by ``show``."""
    dropped = ("evals", "stale_reasons", "config", DELTA_KEYS)
    out = {k: v for k, v in record.items() if k not in dropped}
    config = record.get("config") or {}
    out["cfg"] = {k: v for k, v in config.items() if k not in base or base[k] != v}
    absent = [k for k in base if k not in config]
    if absent:
        out["cfg_absent"] = absent
    return out


def _restored(item: Record, base: dict[str, Any]) -> Record:
    delta = item.pop("cfg", None) or {}
    absent = item.pop("cfg_absent", None) or ()
    config = {**base, **delta}
    for key in absent:
        config.pop(key, None)
    item["config"] = config
    # The only keys in which this record can differ from another restored one; lets
    # `ls` find the differing columns without comparing every key of every record.
    item[DELTA_KEYS] = [*delta, *absent]
    return item


def save_index(root: Path, header: dict[str, Any], records: dict[str, Record]) -> bool:
    """Rewrite the whole index atomically; False (and nothing raised) when it cannot."""
    encode = _encoder()
    base: dict[str, Any] = next((r["config"] for r in records.values() if r.get("config")), {})
    lines = [encode({**header, "base": base, "version": VERSION})]
    lines.extend(encode(_stored(r, base)) for r in records.values())
    try:
        with _lock(root).try_hold(_LOCK_WAIT_S) as ok:
            if not ok:
                return False
            atomic_write_text(root / INDEX_FILE, "\n".join(lines) + "\n")
    except Exception as err:  # a read-only results dir still lists fine, just uncached
        logger.debug("index %s not written: %s", root / INDEX_FILE, err)
        return False
    return True


def note_completed(root: Path, directory: Path) -> None:
    """Append the fresh record of the experiment holding ``directory`` (a Train or Evaluate
    output) to the index. Called by every task on completion; never raises, since the index
    is only a cache and a task must not fail because of it."""
    try:
        rel = Path(os.path.relpath(directory, root)).parts
        if len(rel) not in (EXPERIMENT_DEPTH, stage("eval").depth) or ".." in rel:
            return  # PrepareData / BuildModel: no experiment record changes
        if not (root / INDEX_FILE).is_file():
            return  # no index yet: the next `forge ls` builds it from the directories
        record = read_record(root, "/".join(rel[:EXPERIMENT_DEPTH]), settled=True)
        with _lock(root).try_hold(_LOCK_WAIT_S) as ok:
            if ok:
                with open(root / INDEX_FILE, encoding="utf-8") as fh:
                    base = json.loads(fh.readline()).get("base") or {}
                line = _encoder()(_stored(record, base)) + "\n"
                with open(root / INDEX_FILE, "a", encoding="utf-8") as fh:
                    fh.write(line)
    except Exception as err:  # the index is a cache: never fail the task over it
        logger.debug("index update for %s skipped: %s", directory, err)

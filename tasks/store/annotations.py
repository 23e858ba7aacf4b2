"""Tags and a note on an experiment: validated, and changed read-modify-write under a lock.

The annotations live in the experiment's ``annotations.json``
(:class:`~tasks.store.records.AnnotationRecord`). They are no part of any digest, and
writing them touches neither ``.digest`` nor ``_SUCCESS``, so a finished step never reruns
because of them. The experiment folder's own ``.annotations.lock`` (not the step's
``.lock``, which a running Train holds) makes two concurrent ``forge tag`` calls both
count: each reads the file only once it holds the lock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from tasks.errors import ConfigError
from tasks.store.lock import FolderLock
from tasks.store.names import ANNOTATIONS_LOCK
from tasks.store.records import AnnotationRecord

__all__ = ["MAX_NOTE", "TAG_PATTERN", "annotate", "check_tags"]

TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+/-]{0,63}")
MAX_NOTE = 10_000
_LOCK_WAIT_S = 30.0


def check_tags(tags: Iterable[str], where: str = "tag") -> list[str]:
    """``tags`` in order, duplicates dropped, each checked.

    Raises:
        ConfigError: a tag is not 1-64 characters of letters, digits and ``_ . : + / -``
            starting with a letter or digit (a space or comma would make ``--tag`` and
            ``--where`` ambiguous).
    """
    checked: dict[str, None] = {}
    for tag in tags:
        if not TAG_PATTERN.fullmatch(tag):
            raise ConfigError(
                f"{where} {tag!r}: a tag is 1-64 characters of letters, digits and "
                "_ . : + / - starting with a letter or digit (e.g. baseline, lr-sweep:v2); "
                'put free text in a note instead (forge note EXP "text")'
            )
        checked[tag] = None
    return list(checked)


def annotate(
    directory: Path,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    note: str | None = None,
) -> AnnotationRecord:
    """Add and remove tags and/or replace the note of the experiment ``directory``.

    Args:
        directory: the experiment folder.
        add: tags to add (kept in the order first added).
        remove: tags to remove (absent ones are ignored).
        note: the new note; ``""`` removes it, None leaves it as it is.

    Returns:
        The record as written.

    Raises:
        ConfigError: a tag is malformed or the note is too long.
        CorruptArtifactError: the stored ``annotations.json`` is damaged (it is not
            silently replaced: it may hold a note someone wrote).
        AlreadyRunningError: another process held the lock for 30 s.
    """
    added = check_tags(add)
    removed = set(check_tags(remove))
    if note is not None and len(note) > MAX_NOTE:
        raise ConfigError(
            f"note: {len(note)} characters, at most {MAX_NOTE}; keep longer text in a "
            "file beside the experiment"
        )
    directory = Path(directory)
    with FolderLock.of(directory, ANNOTATIONS_LOCK).hold(_LOCK_WAIT_S):
        current = AnnotationRecord.read(directory)
        if not current.missing:
            current.require()
        tags = [t for t in dict.fromkeys([*current.tags, *added]) if t not in removed]
        record = AnnotationRecord(
            tags=tuple(tags),
            note=current.note if note is None else (note or None),
            updated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        record.write(directory)
    return record

"""``forge rm`` and ``forge gc``: plan what would be deleted, then delete exactly that.

Only Forge's own files are ever candidates: step folders (they hold a ``.digest``) and
``.tmp-<pid>-…`` temporaries of atomic writes (:mod:`tasks.store.atomic`). A folder whose lock a
live process holds is never touched, nor is anything a user put into the results tree.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import AlreadyRunningError, StorageError
from tasks.store.atomic import TMP_PREFIX, temporary_writer
from tasks.store.lock import FolderLock, lock_held
from tasks.store.names import DIGEST_FILE, SUCCESS
from tasks.store.summary import Record

__all__ = ["Doomed", "delete", "describe", "describe_size", "plan_gc", "plan_rm"]


@dataclass(frozen=True)
class Doomed:
    """A file or folder that would be deleted, and why."""

    path: Path
    why: str
    size: int
    # Planned because the step was incomplete: if it completed meanwhile, keep it.
    only_if_incomplete: bool = False


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                continue
    return total


def plan_rm(root: Path, record: Record) -> list[Doomed]:
    """The experiment folder of ``record`` (its evaluations included, its data and model
    folders not: other experiments share them).

    Raises:
        AlreadyRunningError: a process is training or evaluating it right now.
    """
    directory = root / record["path"]
    busy = [p for p in (directory, *directory.glob("eval/*")) if lock_held(p)]
    if busy:
        raise AlreadyRunningError(
            f"{busy[0]} is locked by a running task; stop it first, then rerun forge rm"
        )
    return [
        Doomed(directory, f"experiment {record['id'][:8]} ({record['status']})", _size(directory))
    ]


def _tmp_owner_dead(name: str) -> int | None:
    """The pid of a dead writer of a Forge temporary, else None (alive, ours, or not a
    name Forge generates)."""
    pid = temporary_writer(name)
    if pid is None or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    except PermissionError:
        return None
    return None


def _has_complete_step(directory: Path) -> bool:
    return any(True for _ in directory.rglob(SUCCESS))


def plan_gc(root: Path) -> list[Doomed]:
    """Partial leftovers of crashed runs under ``root``.

    * ``.tmp-<pid>-…`` entries whose writing process is gone;
    * step folders without ``_SUCCESS`` whose lock is free (crashed, killed or failed
      runs; a running one holds its lock), unless a completed step lives inside them.
    """
    doomed: list[Doomed] = []
    for base, dirs, files in os.walk(root):
        here = Path(base)
        depth = len(here.relative_to(root).parts)
        for name in sorted(dirs + files):
            if not name.startswith(TMP_PREFIX):
                continue
            pid = _tmp_owner_dead(name)
            if pid is not None:
                doomed.append(
                    Doomed(here / name, f"temporary of a dead process ({pid})", _size(here / name))
                )
        keep = []
        for name in sorted(dirs):
            path = here / name
            if name.startswith(TMP_PREFIX):
                continue
            is_step = (path / DIGEST_FILE).is_file() and depth in (0, 1, 2, 4)
            if (
                is_step
                and not (path / SUCCESS).is_file()
                and not lock_held(path)
                and not _has_complete_step(path)
            ):
                level = {0: "data", 1: "model", 2: "experiment", 4: "evaluation"}[depth]
                why = f"incomplete {level} step (crashed or failed run)"
                doomed.append(Doomed(path, why, _size(path), only_if_incomplete=True))
            else:
                keep.append(name)
        dirs[:] = keep
    return doomed


def describe(items: list[Doomed], root: Path) -> str:
    """The list shown before asking: one line per item, and the total size."""
    lines = []
    for item in items:
        try:
            shown = item.path.relative_to(root)
        except ValueError:
            shown = item.path
        lines.append(f"  {describe_size(item.size):>9}  {shown}  — {item.why}")
    lines.append(f"  {describe_size(sum(i.size for i in items)):>9}  in {len(items)} item(s)")
    return "\n".join(lines) + "\n"


def describe_size(size: int) -> str:
    """A size in B, KiB, MiB or GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _step_folders(path: Path) -> list[Path]:
    """``path`` and the step folders inside it (evaluations), when it is a step folder."""
    if path.is_symlink() or not (path / DIGEST_FILE).is_file():
        return []
    return [path, *(p for p in sorted(path.glob("eval/*")) if (p / DIGEST_FILE).is_file())]


def delete(items: list[Doomed]) -> list[Doomed]:
    """Delete the planned items (those already gone are skipped).

    A step folder is deleted only while its lock (and its evaluations' locks) are held,
    taken after the confirmation: a run that started in between is never pulled from
    under it, and is skipped instead. Markers go first, so a folder whose deletion fails
    half-way never looks complete.

    Returns:
        The items skipped because a run holds them now (or completed them meanwhile).

    Raises:
        StorageError: something could not be deleted.
    """
    skipped: list[Doomed] = []
    for item in items:
        try:
            if item.path.is_dir() and not item.path.is_symlink():
                with contextlib.ExitStack() as stack:
                    folders = _step_folders(item.path)
                    held = all(stack.enter_context(FolderLock.of(f).try_hold()) for f in folders)
                    if not held or (item.only_if_incomplete and (item.path / SUCCESS).exists()):
                        skipped.append(item)
                        continue
                    for folder in reversed(folders):
                        (folder / SUCCESS).unlink(missing_ok=True)
                    shutil.rmtree(item.path)
            elif item.path.exists() or item.path.is_symlink():
                item.path.unlink()
        except OSError as err:
            raise StorageError(f"deleting {item.path} failed: {err.strerror or err}") from err
    return skipped

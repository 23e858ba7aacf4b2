"""Checkpoint files of a Train run: naming, committing, finding the newest good one.

A checkpoint ``checkpoints/epoch-0003.<ext>`` counts only once its sidecar
``epoch-0003.json`` exists; the sidecar is written (atomically) after the checkpoint, so a
crash mid-write leaves an uncommitted checkpoint that resume ignores and the next run
cleans. The best weights so far are kept as ``best-0002.<ext>`` next to them.

A stop inside an epoch (a preemption) leaves ``partial-0004.<ext>``, committed by
``partial-0004.json``: the state after epochs 1–3 and some batches of epoch 4, the loop's
``partial`` state saying how far. It has its own name so that nothing that lists
finished epochs (:func:`committed`, retention, Evaluate's ``epoch:``) can mistake it for
one; only resume asks for it (``committed(..., partial=True)``). A checkpoint of a later
finished epoch supersedes it, and at most one is kept.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.store.atomic import atomic_write_text
from tasks.store.names import CHECKPOINT_DIR
from tasks.store.records import json_text

__all__ = [
    "CheckpointInfo",
    "best_path",
    "checkpoint_path",
    "commit",
    "commit_partial",
    "discard_partial",
    "committed",
    "improves",
    "partial_path",
    "prune",
    "retain",
]

_PATTERN = re.compile(r"^epoch-(\d+)\.json$")
_BEST = re.compile(r"^best-(\d+)\.")
_PARTIAL = re.compile(r"^partial-(\d+)\.json$")
_PARTIAL_FILE = re.compile(r"^partial-(\d+)\.")


@dataclass(frozen=True)
class CheckpointInfo:
    """A committed checkpoint and the bookkeeping stored beside it."""

    epoch: int
    path: Path
    best_epoch: int | None
    best_value: float | None
    # The training loop's state at this epoch (early stopping, why training stopped).
    loop: dict[str, Any] = field(default_factory=dict)
    # A stop inside epoch ``epoch + 1``: ``loop["partial"]`` says how far it got.
    partial: bool = False


def checkpoint_path(directory: Path, epoch: int, suffix: str) -> Path:
    return directory / CHECKPOINT_DIR / f"epoch-{epoch:04d}{suffix}"


def best_path(directory: Path, epoch: int, suffix: str) -> Path:
    return directory / CHECKPOINT_DIR / f"best-{epoch:04d}{suffix}"


def partial_path(directory: Path, epoch: int, suffix: str) -> Path:
    """The checkpoint of a stop inside ``epoch`` (1-based; it holds the epochs before it)."""
    return directory / CHECKPOINT_DIR / f"partial-{epoch:04d}{suffix}"


def commit(directory: Path, epoch: int, suffix: str, bookkeeping: dict[str, Any]) -> None:
    """Mark the checkpoint of ``epoch`` as complete by writing its sidecar.

    A partial checkpoint of this or an earlier epoch is superseded and removed.
    """
    sidecar = directory / CHECKPOINT_DIR / f"epoch-{epoch:04d}.json"
    record = {"epoch": epoch, "file": checkpoint_path(directory, epoch, suffix).name, **bookkeeping}
    atomic_write_text(sidecar, json_text(record, indent=None))
    _drop_partials(directory, lambda inside: inside <= epoch)


def commit_partial(directory: Path, epoch: int, suffix: str, bookkeeping: dict[str, Any]) -> None:
    """Commit the checkpoint of a stop inside ``epoch`` (:func:`partial_path`).

    Its sidecar's ``epoch`` is the last finished epoch (``epoch - 1``), what the file
    restores; other partial checkpoints are removed.
    """
    name = partial_path(directory, epoch, suffix).name
    record = {"epoch": epoch - 1, "file": name, **bookkeeping}
    atomic_write_text(
        directory / CHECKPOINT_DIR / f"partial-{epoch:04d}.json", json_text(record, indent=None)
    )
    _drop_partials(directory, lambda inside: inside != epoch)


def discard_partial(directory: Path) -> None:
    """Remove every partial checkpoint (one that cannot continue its epoch), sidecar first:
    resume then starts from the last finished epoch."""
    _drop_partials(directory, lambda inside: True)


def _drop_partials(directory: Path, drop: Callable[[int], bool]) -> None:
    """Remove partial checkpoints whose epoch ``drop(epoch)`` selects, sidecar first."""
    folder = directory / CHECKPOINT_DIR
    if not folder.is_dir():
        return
    entries = sorted(folder.iterdir(), key=lambda e: not e.name.endswith(".json"))
    for entry in entries:
        match = _PARTIAL_FILE.match(entry.name)
        if match and drop(int(match.group(1))):
            entry.unlink(missing_ok=True)


def committed(directory: Path, *, partial: bool = False) -> list[CheckpointInfo]:
    """Committed checkpoints of finished epochs, oldest first.

    Args:
        partial: also the checkpoint of a stop inside an epoch (for resume only), after
            the finished epoch it continues.
    """
    folder = directory / CHECKPOINT_DIR
    found: list[CheckpointInfo] = []
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        match = _PATTERN.match(entry.name)
        is_partial = False
        if not match and partial:
            match = _PARTIAL.match(entry.name)
            is_partial = match is not None
        if not match:
            continue
        try:
            record = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        path = folder / str(record.get("file", ""))
        if path.parent != folder or not path.exists():
            continue
        loop = record.get("loop")
        if is_partial and not (isinstance(loop, dict) and isinstance(loop.get("partial"), dict)):
            continue  # without the loop's partial state it cannot continue its epoch
        found.append(
            CheckpointInfo(
                int(match.group(1)) - is_partial,
                path,
                record.get("best_epoch"),
                record.get("best_value"),
                loop if isinstance(loop, dict) else {},
                is_partial,
            )
        )
    return sorted(found, key=lambda info: (info.epoch, info.partial))


def prune(directory: Path, *, after: int | None = None, keep_best: int | None = None) -> None:
    """Remove what a resumed or advancing run no longer needs.

    Args:
        after: drop checkpoints and best-weight files of epochs after this one (they belong
            to a run that crashed before committing them), and partial checkpoints of
            epochs other than the one after it (they do not continue from it).
        keep_best: drop best-weight files other than this epoch's that are older than it.
    """
    folder = directory / CHECKPOINT_DIR
    if not folder.is_dir():
        return
    if after is not None:
        _drop_partials(directory, lambda inside: inside != after + 1)
    for entry in folder.iterdir():
        best = _BEST.match(entry.name)
        epoch_match = re.match(r"^epoch-(\d+)\.", entry.name)
        if best:
            epoch = int(best.group(1))
            if (after is not None and epoch > after) or (
                keep_best is not None and epoch < keep_best
            ):
                entry.unlink(missing_ok=True)
        elif epoch_match and after is not None and int(epoch_match.group(1)) > after:
            entry.unlink(missing_ok=True)


def retain(directory: Path, keep: int) -> int | None:
    """Keep the newest ``keep`` committed checkpoints; delete older ones, sidecar first.

    Returns:
        The oldest best epoch a kept checkpoint refers to (older best-weight files are no
        longer needed), or None when none is kept.
    """
    kept = committed(directory)
    old, kept = kept[: max(len(kept) - keep, 0)], kept[-keep:]
    for info in old:  # uncommit first: a crash in between leaves only an ignored file
        (directory / CHECKPOINT_DIR / f"epoch-{info.epoch:04d}.json").unlink(missing_ok=True)
        info.path.unlink(missing_ok=True)
    bests = [info.best_epoch for info in kept if isinstance(info.best_epoch, int)]
    return min(bests) if bests else None


def improves(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` of the monitored metric beats ``best`` so far (``mode`` min/max).

    A NaN never beats anything but "nothing yet", and anything beats a NaN, so a run
    whose first epoch diverged can still keep a later, real best.
    """
    if math.isnan(value):
        return best is None
    if best is None or math.isnan(best):
        return True
    return value < best if mode == "min" else value > best

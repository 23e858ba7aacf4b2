"""Where each step's files live inside the results directory.

Each step nests under its upstream, so sharing follows the dependency graph::

    <results>/<data>-<hash>/                 PrepareData
      <model>-<hash>/                        BuildModel
        <train>-<hash>/                      Train: the experiment directory
          eval/<eval>-<hash>/                Evaluate

A directory's short hash is checked against the full digest stored in it (``.digest``),
and lengthened on the rare collision.
"""

from __future__ import annotations

from pathlib import Path

from tasks.store.atomic import atomic_write_text
from tasks.store.names import DIGEST_FILE, SUCCESS

__all__ = ["child_dir", "claim_dir", "is_complete"]

_SHORT_LENGTHS = (8, 12, 16, 64)
_claimed: dict[tuple[str, str, str], Path] = {}


def child_dir(parent: Path, name: str, digest: str) -> Path:
    """The directory for ``name`` with content ``digest`` under ``parent``.

    Returns the first ``<name>-<digest prefix>`` that is free or already holds this digest.
    """
    key = (str(parent), name, digest)
    if key in _claimed:
        return _claimed[key]
    for length in _SHORT_LENGTHS:
        candidate = parent / f"{name}-{digest[:length]}"
        stored = candidate / DIGEST_FILE
        try:
            existing = stored.read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return candidate
        if existing == digest:
            # A directory's digest never changes once written, so this answer is final.
            _claimed[key] = candidate
            return candidate
    raise RuntimeError(f"hash collision on the full digest {digest} under {parent}")


def claim_dir(directory: Path, digest: str) -> None:
    """Create ``directory`` and record the digest it belongs to."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / DIGEST_FILE).exists():
        atomic_write_text(directory / DIGEST_FILE, digest + "\n")


def is_complete(directory: Path) -> bool:
    """Whether the step owning ``directory`` finished writing it."""
    return (directory / SUCCESS).is_file()

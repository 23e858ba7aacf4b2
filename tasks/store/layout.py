"""Where each step's files live inside the results directory.

Each step nests under its upstream, so sharing follows the dependency graph::

    <results>/<data>-<hash>/                 PrepareData
      <model>-<hash>/                        BuildModel
        <train>-<hash>/                      Train: the experiment directory
          eval/<eval>-<hash>/                Evaluate

A directory is named ``<name>-<digest prefix>`` (``name`` is the config's ``name:`` key or
its file stem). Its full digest is stored in it (``.digest``): an existing directory with
the same digest is reused whatever its name, and the prefix is lengthened on the rare
collision.
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

    Identity is content: a directory that already holds ``digest`` is reused whatever its
    name prefix (a config copied to another file name, or renamed, is the same step).
    Otherwise the first ``<name>-<digest prefix>`` that is free is returned; the prefix is
    lengthened on the rare collision with another digest.
    """
    key = (str(parent), name, digest)
    if key in _claimed:
        return _claimed[key]
    free: Path | None = None
    for length in _SHORT_LENGTHS:
        candidate = parent / f"{name}-{digest[:length]}"
        existing = _stored_digest(candidate)
        if existing == digest:
            # A directory's digest never changes once written, so this answer is final.
            _claimed[key] = candidate
            return candidate
        if existing is not None and len(existing) >= length and digest.startswith(existing):
            # Our folder with a truncated .digest: damaged, and reported as such by whoever
            # reads it, rather than silently trained again beside it.
            return candidate
        if existing is None:
            free = candidate
            break
    # One directory listing: any sibling named ``*-<prefix>*`` may hold the same content
    # under another name. Only the few whose name carries the digest prefix are read.
    for sibling in sorted(parent.glob(f"*-{digest[: _SHORT_LENGTHS[0]]}*")):
        if sibling != free and _stored_digest(sibling) == digest:
            _claimed[key] = sibling
            return sibling
    if free is None:
        raise RuntimeError(f"hash collision on the full digest {digest} under {parent}")
    return free


def _stored_digest(directory: Path) -> str | None:
    """The digest recorded in ``directory``; None when it holds none (free to claim)."""
    try:
        return (directory / DIGEST_FILE).read_bytes().decode("ascii", errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def claim_dir(directory: Path, digest: str) -> None:
    """Create ``directory`` and record the digest it belongs to."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / DIGEST_FILE).exists():
        atomic_write_text(directory / DIGEST_FILE, digest + "\n")


def is_complete(directory: Path) -> bool:
    """Whether the step owning ``directory`` finished writing it."""
    return (directory / SUCCESS).is_file()

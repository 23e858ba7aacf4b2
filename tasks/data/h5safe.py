"""Opening HDF5 files Forge did not necessarily write, without reading anything outside them.

An HDF5 file can point elsewhere: a dataset with *external storage* reads its bytes from any
file named in it (``/etc/passwd``, ``~/.ssh/id_rsa``), a *virtual dataset* maps other files
into itself, an *external link* opens another HDF5 file and a *soft link* redirects a name.
A dataset may also name a filter that HDF5 resolves by loading a plugin library. A results
folder somebody sent you may hold any of these in ``data.h5``, ``predictions.h5``, a
TensorFlow checkpoint or a ``.weights.h5`` file, so every read of such a file goes through
:func:`open_checked`, which walks the whole file once and refuses all of them before a
single array is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tasks.errors import CorruptArtifactError
from tasks.store.versions import Version, stat_version

__all__ = ["check_hdf5", "forget_accepted", "open_checked", "open_version"]

# HDF5's built-in filters (deflate, shuffle, fletcher32, szip, nbit, scaleoffset) and h5py's
# own LZF: none of them needs a plugin library to be loaded.
_BUILTIN_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})
_MAX_OBJECTS = 100_000
# File versions (see open_version) this process has walked and accepted. A sweep worker
# opens the same data.h5 several times per experiment; any write to the file changes its
# version, so a changed file is walked again.
_accepted: set[Version] = set()
_MAX_ACCEPTED = 4096


def _refuse(path: Path, name: str, why: str) -> CorruptArtifactError:
    return CorruptArtifactError(
        f"HDF5 file {path}: {name!r} {why}; Forge refuses HDF5 files that point outside "
        "themselves (external or virtual storage, external or soft links, plugin filters). "
        "The file was tampered with or not written by Forge: rerun the step that wrote it"
    )


def _check_dataset(dataset: Any, path: Path, name: str) -> None:
    if dataset.external:
        raise _refuse(path, name, "uses external storage (its bytes live in another file)")
    if dataset.is_virtual:
        raise _refuse(path, name, "is a virtual dataset (it maps other files)")
    plist = dataset.id.get_create_plist()
    for index in range(plist.get_nfilters()):
        code = plist.get_filter(index)[0]
        if code not in _BUILTIN_FILTERS:
            raise _refuse(path, name, f"needs the HDF5 filter plugin {code}")


def check_hdf5(fh: Any, path: Path) -> None:
    """Refuse an open HDF5 file holding anything that reads outside it.

    Walks every link of every group (``visititems`` would skip soft and external links).

    Raises:
        CorruptArtifactError: naming the file and the offending object.
    """
    import h5py

    pending: list[tuple[str, Any]] = [("/", fh)]
    seen = 0
    while pending:
        prefix, group = pending.pop()
        for key in group:
            name = f"{prefix}{key}"
            seen += 1
            if seen > _MAX_OBJECTS:
                raise _refuse(path, name, f"is beyond the {_MAX_OBJECTS}th object")
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise _refuse(path, name, f"is a {type(link).__name__}")
            item = group[key]
            if isinstance(item, h5py.Dataset):
                _check_dataset(item, path, name)
            elif isinstance(item, h5py.Group):
                pending.append((f"{name}/", item))


def forget_accepted() -> None:
    """Forget which file versions were accepted: the next open of each walks it again."""
    _accepted.clear()


def open_version(fh: Any) -> Version | None:
    """The version (:func:`tasks.store.versions.stat_version`: device, inode, size, mtime,
    ctime, mode) of the file an open ``h5py.File`` reads; None for a non-POSIX driver.

    Any write changes the modification time and the inode change time, and the latter
    cannot be set back by a user, so a file rewritten in place (or replaced by another
    file) never matches the version taken before.
    """
    try:
        handle = fh.id.get_vfd_handle()
    except Exception:  # drivers without a file descriptor (core, family, ...)
        return None
    if not isinstance(handle, int):
        return None
    return stat_version(os.fstat(handle))


def open_checked(path: Path | str) -> Any:
    """Open ``path`` read-only as HDF5 after :func:`check_hdf5` accepted it.

    Use it as ``with open_checked(path) as fh:``.

    Returns:
        The open ``h5py.File``.

    Raises:
        CorruptArtifactError: the file is not readable HDF5, or points outside itself.
    """
    import h5py

    path = Path(path)
    try:
        fh = h5py.File(path, "r")
    except OSError as err:
        raise CorruptArtifactError(
            f"HDF5 file {path} cannot be opened (missing, truncated or not HDF5): {err}"
        ) from err
    try:
        # The version of the file this handle reads (fstat of its descriptor, not of the
        # path, so a file swapped in between is not mistaken for the one walked before).
        version = open_version(fh)
        if version is None or version not in _accepted:
            check_hdf5(fh, path)
            if version is not None:
                if len(_accepted) >= _MAX_ACCEPTED:
                    _accepted.clear()
                _accepted.add(version)
    except BaseException:
        fh.close()
        raise
    return fh

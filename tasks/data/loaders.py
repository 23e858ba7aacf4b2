"""Built-in dataset loaders: bundled and generated data, and users' own files.

Every loader returns a dict of equally long arrays (``{"x": ..., "y": ...}``). Nothing is
downloaded: ``digits`` ships inside scikit-learn (read without importing it), ``moons``
and ``blobs`` are generated, and ``npz``/``csv``/``hdf5`` read the user's files without
unpickling or following links, after checking the sizes their headers declare against the
memory limit (:mod:`tasks.data.limits`).
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

from tasks.config.checks import SEED_MAX, non_negative_number, whole_number
from tasks.data.limits import check_declared_size
from tasks.errors import DataError
from tasks.registry import register_dataset

__all__ = ["blobs", "csv", "digits", "hdf5", "moons", "npz"]


@register_dataset("digits")
def digits(as_image: bool = False) -> dict[str, Any]:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes), scaled to [0, 1].

    Args:
        as_image: shape ``x`` as images ``(n, 8, 8, 1)`` (channels last) instead of ``(n, 64)``.
    """
    import numpy as np

    features, target = _bundled_digits()
    x = (features / 16.0).astype(np.float32)
    if as_image:
        x = x.reshape(-1, 8, 8, 1)
    return {"x": x, "y": target.astype(np.int64)}


def _bundled_digits() -> tuple[Any, Any]:
    """The digits' pixel values (float64) and labels, as ``load_digits`` returns them.

    Read straight from the CSV file scikit-learn ships, the way ``load_digits`` reads it:
    importing ``sklearn.datasets`` costs about a second (scikit-learn and SciPy), several
    times what reading the file does. A scikit-learn without that file is asked instead.
    """
    import gzip
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                data = np.loadtxt(fh, delimiter=",")
            return data[:, :-1], data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


@register_dataset("moons")
def moons(n_samples: int = 1000, noise: float = 0.1, seed: int = 0) -> dict[str, Any]:
    """Two interleaving half circles (binary classification), generated.

    The rows of scikit-learn's ``make_moons(n_samples, noise=noise, random_state=seed)``,
    drawn here with numpy alone (the same points, order and noise, so experiments made
    with either agree): preparing them then costs milliseconds instead of the second
    importing scikit-learn takes.

    Args:
        n_samples: rows, at least 1; the first half circle gets ``n_samples // 2``.
        noise: standard deviation of the Gaussian noise added to every coordinate (>= 0).
        seed: seed of the draw (0 .. 2**32 - 1).
    """
    import numpy as np

    if not whole_number(n_samples) or n_samples < 1:
        raise DataError(f"moons: n_samples is {n_samples!r}; it must be an integer >= 1")
    if not non_negative_number(noise):
        raise DataError(f"moons: noise is {noise!r}; it must be a number >= 0")
    if not whole_number(seed) or not 0 <= seed <= SEED_MAX:
        raise DataError(f"moons: seed is {seed!r}; it must be an integer in 0..{SEED_MAX}")
    n_samples, seed = int(n_samples), int(seed)
    rng = np.random.RandomState(seed)
    outer = n_samples // 2
    inner = n_samples - outer
    t_outer, t_inner = np.linspace(0, np.pi, outer), np.linspace(0, np.pi, inner)
    x = np.vstack(
        [
            np.append(np.cos(t_outer), 1 - np.cos(t_inner)),
            np.append(np.sin(t_outer), 1 - np.sin(t_inner) - 0.5),
        ]
    ).T
    y = np.hstack([np.zeros(outer, dtype=np.int64), np.ones(inner, dtype=np.int64)])
    order = np.arange(n_samples)
    rng.shuffle(order)  # the shuffle draws first, then the noise, from one generator
    x, y = x[order], y[order]
    x += rng.normal(scale=noise, size=x.shape)
    return {"x": x.astype(np.float32), "y": y}


@register_dataset("blobs")
def blobs(
    n_samples: int = 1000,
    centers: int = 3,
    n_features: int = 2,
    cluster_std: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Isotropic Gaussian blobs (multi-class classification), generated."""
    import numpy as np
    from sklearn.datasets import make_blobs

    x, y = make_blobs(
        n_samples=n_samples,
        centers=centers,
        n_features=n_features,
        cluster_std=cluster_std,
        random_state=seed,
    )
    return {"x": x.astype(np.float32), "y": y.astype(np.int64)}


@register_dataset("npz")
def npz(path: str, x_key: str = "x", y_key: str | None = "y") -> dict[str, Any]:
    """Arrays from a ``.npz`` file (loaded with ``allow_pickle=False``).

    Only the arrays named are read, and only after their headers' sizes were checked
    against the memory limit and against the bytes the archive really holds.
    """
    import numpy as np

    keys = [k for k in (x_key, y_key) if k]
    headers = _npz_headers(path)
    for key in keys:
        if key not in headers:
            raise DataError(f"data file {path}: no array {key!r}; it has {sorted(headers)}")
        _check_npy_header(path, key, *headers[key])
    try:
        with np.load(path, allow_pickle=False) as archive:
            return _pick({k: archive[k] for k in keys}, path, x_key, y_key)
    except ValueError as err:  # object arrays need pickle: refuse them
        raise DataError(f"data file {path}: cannot be read without unpickling ({err})") from err
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"data file {path}: not a readable .npz archive ({err})") from err


_NpyHeader = tuple[tuple[int, ...], Any, int]


def _npz_headers(path: str) -> dict[str, _NpyHeader]:
    """Array name → (declared shape, dtype, bytes stored after the header), read cheaply."""
    import numpy as np

    headers: dict[str, _NpyHeader] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(fh)
                    headers[info.filename[: -len(".npy")]] = (
                        tuple(shape),
                        dtype,
                        info.file_size - fh.tell(),
                    )
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"data file {path}: not a readable .npz archive ({err})") from err
    return headers


def _check_npy_header(path: str, key: str, shape: tuple[int, ...], dtype: Any, stored: int) -> None:
    """Refuse an array whose header asks for too much memory or more than the file holds."""
    if dtype.hasobject:
        return  # refused by np.load(allow_pickle=False) with its own message
    declared = math.prod(shape) * dtype.itemsize
    check_declared_size(path, f"array {key!r} (shape {shape}, {dtype})", declared)
    if declared != stored:
        raise DataError(
            f"data file {path}: array {key!r} declares shape {shape} ({dtype}), "
            f"{declared:,} bytes, but the archive holds {stored:,}; the file is damaged "
            "or was not written by numpy.save/savez: write it again"
        )


@register_dataset("csv")
def csv(path: str, target: str = "y", delimiter: str = ",") -> dict[str, Any]:
    """A CSV file with a header row; ``target`` names the label column, the rest form ``x``."""
    import numpy as np

    try:
        # Parsed as float64: up to 8 bytes per cell of at least 2 characters ("0,").
        check_declared_size(path, "the parsed table", 4 * os.path.getsize(path))
        with Path(path).open(encoding="utf-8") as fh:
            header = fh.readline().strip().split(delimiter)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
                table = np.loadtxt(fh, delimiter=delimiter, ndmin=2, dtype=np.float64)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DataError(f"data file {path}: cannot be parsed as numeric CSV ({err})") from err
    if target not in header:
        raise DataError(
            f"data file {path}: no column {target!r} for params.target; columns: {header}"
        )
    if table.shape[0] == 0:
        raise DataError(f"data file {path}: has a header but no data rows")
    if table.shape[1] != len(header):
        raise DataError(
            f"data file {path}: the header names {len(header)} columns but the rows have "
            f"{table.shape[1]}; make them agree"
        )
    col = header.index(target)
    y = table[:, col]
    x = np.delete(table, col, axis=1).astype(np.float32)
    y_out = y.astype(np.int64) if np.all(np.mod(y, 1) == 0) else y.astype(np.float32)
    return {"x": x, "y": y_out}


@register_dataset("hdf5")
def hdf5(path: str, x_key: str = "x", y_key: str | None = "y") -> dict[str, Any]:
    """Datasets from an HDF5 file, refusing external links, external storage and virtual data."""
    import h5py

    try:
        fh = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"data file {path}: not a readable HDF5 file ({err})") from err
    with fh:
        arrays: dict[str, Any] = {}
        for key in [k for k in (x_key, y_key) if k]:
            link = fh.get(key, getlink=True)
            if link is None:
                raise DataError(f"data file {path}: no dataset {key!r}; it has {list(fh)}")
            if not isinstance(link, h5py.HardLink):
                raise DataError(
                    f"data file {path}: {key!r} is a {type(link).__name__}; links to other "
                    "files or paths are refused, store the data in the file itself"
                )
            ds = fh[key]
            if not isinstance(ds, h5py.Dataset):
                raise DataError(f"data file {path}: {key!r} is not a dataset")
            if ds.external or ds.is_virtual:
                raise DataError(
                    f"data file {path}: {key!r} uses external or virtual storage; refused, "
                    "store the data in the file itself"
                )
            check_declared_size(
                path, f"dataset {key!r} (shape {ds.shape}, {ds.dtype})", ds.size * ds.dtype.itemsize
            )
            try:
                arrays[key] = ds[()]
            except (OSError, ValueError, TypeError) as err:
                raise DataError(
                    f"data file {path}: dataset {key!r} cannot be read ({err}); "
                    "the file is damaged or uses an unsupported type"
                ) from err
        return _pick(arrays, path, x_key, y_key)


def _pick(arrays: dict[str, Any], path: str, x_key: str, y_key: str | None) -> dict[str, Any]:
    import numpy as np

    keys = [k for k in (x_key, y_key) if k]
    for key in keys:
        if key not in arrays:
            raise DataError(f"data file {path}: no array {key!r}; it has {sorted(arrays)}")
    out = {"x": np.asarray(arrays[x_key])}
    if y_key:
        out["y"] = np.asarray(arrays[y_key])
    return out

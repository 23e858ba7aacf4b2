"""The ``data.h5`` file: writing the split arrays, reading metadata, streaming batches.

Layout: groups ``train``, ``val`` and ``test``, each holding one dataset per array
(``x``, ``y``, or any named arrays), chunked along rows. Root attributes describe the
arrays (per-row shape and dtype), the class count and the config digest. Train reads
batches through :class:`BatchStream`, which keeps at most a fixed memory budget of rows
in memory, so a file larger than memory trains as well as a small one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.config.checks import check_split_rows
from tasks.data.h5safe import forget_accepted, open_checked, open_version
from tasks.errors import DataError
from tasks.store.atomic import reserve_space
from tasks.store.jsonio import dumps_json
from tasks.store.versions import Version, stat_version

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "SPLITS",
    "BatchStream",
    "DataMeta",
    "clear_read_memos",
    "read_meta",
    "read_split",
    "reserve_hdf5",
    "write_splits",
]

# Splits read whole by BatchStream, shared within a process: a sweep worker trains many
# experiments on one data.h5 and would otherwise read the same split for every one. Keyed
# by the file's version (a rewritten file is read again), the arrays are read-only, and
# the least recently used are dropped beyond _SHARED_BYTES.
_shared: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
# Per file version this process opened (and check_hdf5 accepted): the stored metadata, and
# each split's sorted array names, rows and bytes per row of each array.
_meta_texts: dict[Version, str] = {}
_layouts: dict[tuple[Version, str], tuple[list[str], int, dict[str, int]]] = {}
_MAX_REMEMBERED = 4096
_SHARED_BYTES = 512 << 20

# HDF5's own bytes besides the arrays: superblock, object headers, chunk indexes.
_HDF5_OVERHEAD = 256 * 1024


def reserve_hdf5(path: Path, payload_bytes: int, datasets: int = 1) -> None:
    """Make sure the disk can take an HDF5 file of ``payload_bytes`` of arrays before it
    is written: HDF5 does not survive running out of space mid-file (closing the file
    then crashes the process), so a full disk must be found before it starts.

    Raises:
        StorageError: there is not enough space (or quota) for it.
    """
    estimate = int(payload_bytes * 1.1) + _HDF5_OVERHEAD + 16 * 1024 * datasets
    reserve_space(path, estimate)


SPLITS = ("train", "val", "test")
_CHUNK_BYTES = 4 << 20  # 4 MiB chunks read about twice as fast as 1 MiB ones
_COPY_ROWS = 65536


@dataclass(frozen=True)
class DataMeta:
    """What a model builder is told about the data.

    Attributes:
        arrays: name → {"shape": per-row shape, "dtype": dtype string}.
        num_classes: number of classes of ``y`` when it holds class labels, else None.
        task: ``classification``, ``regression`` or ``unsupervised``.
        rows: split → number of rows.
    """

    arrays: dict[str, dict[str, Any]]
    num_classes: int | None
    task: str
    rows: dict[str, int]

    @property
    def input_shape(self) -> tuple[int, ...]:
        first = "x" if "x" in self.arrays else next(iter(self.arrays))
        return tuple(self.arrays[first]["shape"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "arrays": self.arrays,
            "num_classes": self.num_classes,
            "task": self.task,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataMeta:
        return cls(
            arrays={
                k: {"shape": list(v["shape"]), "dtype": v["dtype"]}
                for k, v in data["arrays"].items()
            },
            num_classes=data.get("num_classes"),
            task=data["task"],
            rows=dict(data["rows"]),
        )


def _check_arrays(arrays: Mapping[str, Any], where: str) -> int:
    import numpy as np

    if not isinstance(arrays, Mapping) or not arrays:
        raise DataError(f"{where}: the loader must return a non-empty dict of arrays")
    lengths = {}
    for name, arr in arrays.items():
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise DataError(f"{where}: array name {name!r} must be letters, digits and '_'")
        if not hasattr(arr, "shape") or len(arr.shape) == 0:
            raise DataError(f"{where}: array {name!r} must be an array with a row axis")
        if not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
            raise DataError(
                f"{where}: array {name!r} has dtype {arr.dtype}; only numbers are stored"
            )
        lengths[name] = arr.shape[0]
    if len(set(lengths.values())) != 1:
        raise DataError(
            f"{where}: arrays have different lengths {lengths}; "
            "every array needs one row per example"
        )
    n = next(iter(lengths.values()))
    if n < 3:
        raise DataError(f"{where}: only {n} rows; at least 3 are needed to split")
    return int(n)


def _infer_task(arrays: Mapping[str, Any], stored: Mapping[str, Any]) -> tuple[str, int | None]:
    import numpy as np

    if "y" not in arrays:
        return "unsupervised", None
    if np.issubdtype(stored["y"], np.integer) and len(arrays["y"].shape) == 1:
        y = np.asarray(arrays["y"])
        if y.min() < 0:
            raise DataError("labels 'y' must be non-negative class indices")
        return "classification", int(y.max()) + 1
    return "regression", None


def _split_indices(n: int, val: float, test: float, seed: int) -> dict[str, np.ndarray]:
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test))
    n_val = int(round(n * val))
    parts = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    # Sorted indices let h5py and numpy read lazily stored arrays in one forward pass.
    return {k: np.sort(v) for k, v in parts.items()}


def _check_finite(block: np.ndarray, name: str, where: str, overflow: bool = False) -> None:
    """Refuse NaN/inf values (``overflow``: ones created by the cast to the stored dtype)."""
    import numpy as np

    if not np.issubdtype(block.dtype, np.floating) or np.all(np.isfinite(block)):
        return
    if overflow:
        raise DataError(
            f"{where}: array {name!r} holds values beyond the range of {block.dtype} "
            f"(±{float(np.finfo(block.dtype).max):.3g}), the dtype it is trained in; "
            "rescale it (e.g. standardise) before training"
        )
    raise DataError(
        f"{where}: array {name!r} contains NaN or infinite values; "
        "clean or impute them before training"
    )


def write_splits(
    path: Path,
    arrays: Mapping[str, Any],
    split: Mapping[str, Any],
    attrs: Mapping[str, Any],
    where: str,
    dtypes: Mapping[str, str] | None = None,
) -> DataMeta:
    """Split ``arrays`` and write them to a new HDF5 file at ``path``.

    Args:
        path: the (temporary) file to write.
        arrays: name → array-like with a row axis (numpy or h5py datasets).
        split: ``{"val": fraction, "test": fraction, "seed": int}``.
        attrs: extra root attributes (config digest, ...).
        where: the data config, for messages.
        dtypes: name → dtype to store the array as (cast block by block while copying);
            arrays not named keep their own dtype.

    Returns:
        The metadata also stored in the file.

    Raises:
        DataError: arrays are unusable (mismatched lengths, NaN/inf, non-numeric).
    """
    import h5py
    import numpy as np

    n = _check_arrays(arrays, where)
    stored = {k: np.dtype((dtypes or {}).get(k, v.dtype)) for k, v in arrays.items()}
    task, num_classes = _infer_task(arrays, stored)
    check_split_rows(n, split, where)  # before anything is written
    indices = _split_indices(n, float(split["val"]), float(split["test"]), int(split["seed"]))
    meta = DataMeta(
        arrays={
            k: {"shape": list(v.shape[1:]), "dtype": str(stored[k])} for k, v in arrays.items()
        },
        num_classes=num_classes,
        task=task,
        rows={k: int(len(v)) for k, v in indices.items()},
    )
    payload = sum(
        int(np.prod(v.shape, dtype=np.int64)) * stored[k].itemsize for k, v in arrays.items()
    )
    reserve_hdf5(path, payload, datasets=len(arrays) * len(indices))
    with h5py.File(path, "w", libver="latest") as fh:
        for split_name, idx in indices.items():
            group = fh.create_group(split_name)
            for name, arr in arrays.items():
                row_bytes = max(
                    1, int(np.prod(arr.shape[1:], dtype=np.int64)) * stored[name].itemsize
                )
                chunk_rows = max(1, min(len(idx) or 1, _CHUNK_BYTES // row_bytes))
                ds = group.create_dataset(
                    name,
                    shape=(len(idx), *arr.shape[1:]),
                    dtype=stored[name],
                    chunks=(chunk_rows, *arr.shape[1:]) if len(idx) else None,
                )
                for start in range(0, len(idx), _COPY_ROWS):
                    block = np.asarray(arr[idx[start : start + _COPY_ROWS]])
                    _check_finite(block, name, where)
                    with np.errstate(over="ignore"):  # overflow is reported just below
                        cast = block.astype(stored[name], copy=False)
                    if block.dtype != cast.dtype:
                        _check_finite(cast, name, where, overflow=True)
                    ds[start : start + len(block)] = cast
        fh.attrs["forge_meta"] = dumps_json(meta.to_dict())
        fh.attrs["num_classes"] = -1 if num_classes is None else num_classes
        fh.attrs["task"] = task
        for key, value in attrs.items():
            fh.attrs[key] = value
    return meta


def read_meta(path: Path) -> DataMeta:
    """Read the metadata PrepareData stored in ``data.h5`` (once per file version and
    process; each call gets its own copy)."""
    version = _path_version(path)
    text = _meta_texts.get(version) if version is not None else None
    if text is None:
        with open_checked(path) as fh:
            text = str(fh.attrs["forge_meta"])
            opened = open_version(fh)
        if opened is not None:
            _remember(_meta_texts, opened, text)
    return DataMeta.from_dict(json.loads(text))


def _path_version(path: Path) -> Version | None:
    """The version of the file at ``path`` now; None when it cannot be stat'ed (the open
    that follows reports why)."""
    try:
        return stat_version(os.stat(path))
    except OSError:
        return None


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= _MAX_REMEMBERED:
        memo.clear()
    memo[key] = value


def read_split(path: Path, split: str, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Load one split's arrays fully into memory (for evaluation and inspection)."""
    with open_checked(path) as fh:
        group = fh[split]
        return _read_group(group, names or list(group))


def clear_read_memos() -> None:
    """Forget the shared splits and the accepted file versions of this process, so the
    next read pays what a fresh process pays (benchmarks timing a first Train use it)."""
    _shared.clear()
    _layouts.clear()
    _meta_texts.clear()
    forget_accepted()


def _read_group(group: Any, names: list[str]) -> dict[str, np.ndarray]:
    import numpy as np

    arrays = {}
    for name in names:
        dataset = group[name]
        arrays[name] = np.empty(dataset.shape, dataset.dtype)
        if arrays[name].size:  # straight into the array, without an intermediate copy
            dataset.read_direct(arrays[name])
    return arrays


def _shared_split(fh: Any, split: str, names: list[str]) -> dict[str, np.ndarray]:
    """``split``'s arrays from the open ``fh``, read once per file version and process."""
    version = open_version(fh)
    key = (version, split, tuple(names))
    if version is not None and key in _shared:
        _shared[key] = _shared.pop(key)  # most recently used last
        return _shared[key]
    arrays = _read_group(fh[split], names)
    size = sum(a.nbytes for a in arrays.values())
    if version is None or size > _SHARED_BYTES:
        return arrays
    for array in arrays.values():
        array.flags.writeable = False  # shared: nobody may change another run's data
    used = sum(a.nbytes for entry in _shared.values() for a in entry.values())
    while _shared and used + size > _SHARED_BYTES:
        dropped = _shared.pop(next(iter(_shared)))  # the least recently used
        used -= sum(a.nbytes for a in dropped.values())
    _shared[key] = arrays
    return arrays


class BatchStream:
    """Shuffled mini-batches of one split, read from ``data.h5`` within a memory budget.

    When the split fits in ``buffer_bytes`` it is read once and reshuffled in memory every
    epoch (exact permutation). Otherwise contiguous blocks of rows are read in a shuffled
    order and shuffled within a buffer ("block shuffle"), so memory stays bounded.
    The order depends only on ``(seed, epoch)``: a resumed run sees the same batches.
    """

    def __init__(
        self,
        path: Path,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        buffer_bytes: int = 1 << 30,
        names: list[str] | None = None,
    ) -> None:
        import numpy as np

        self.path = Path(path)
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self._cache: dict[str, np.ndarray] | None = None
        # A file version this process has read: its layout and, when the split is read
        # whole, its shared arrays are known without opening the file again.
        version = _path_version(self.path)
        known = _layouts.get((version, split)) if version is not None else None
        if known is not None and set(names or ()) <= set(known[2]):
            self.names = names or known[0]
            self.rows = known[1]
            self.block_rows = self._block_rows(sum(known[2][k] for k in self.names), buffer_bytes)
            if self.rows > self.block_rows:
                return  # streamed in blocks: each epoch opens the file
            shared = _shared.get((version, split, tuple(self.names)))
            if shared is not None:
                self._cache = shared
                return
        with open_checked(self.path) as fh:
            group = fh[split]
            self.names = names or sorted(group)
            self.rows = int(group[self.names[0]].shape[0])
            row_bytes = {
                k: int(np.prod(group[k].shape[1:], dtype=np.int64)) * group[k].dtype.itemsize
                for k in sorted(group)
            }
            opened = open_version(fh)
            if opened is not None:
                _remember(_layouts, (opened, split), (sorted(group), self.rows, row_bytes))
            self.block_rows = self._block_rows(sum(row_bytes[k] for k in self.names), buffer_bytes)
            if self.rows <= self.block_rows:
                self._cache = _shared_split(fh, split, self.names)

    def _block_rows(self, row_bytes: int, buffer_bytes: int) -> int:
        return max(self.batch_size, buffer_bytes // max(1, row_bytes))

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def order(self) -> list[int]:
        """What decides the order of the batches besides ``(seed, epoch)``: rows, batch
        size, whether the split is read whole or in blocks (and their size), shuffling.
        A resumed epoch may skip its done batches only if this is unchanged."""
        whole = self._cache is not None
        return [self.rows, self.batch_size, 0 if whole else self.block_rows, int(self.shuffle),
                self.seed]  # fmt: skip

    def whole(self) -> dict[str, np.ndarray] | None:
        """The whole split when it was read at once (within the budget), else None.

        The arrays may be shared with other streams of this process: they are read-only.
        """
        return self._cache

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yield the batches of ``epoch`` (dicts of numpy arrays).

        Args:
            skip: leave out the first ``skip`` batches (a resumed epoch's finished ones);
                the rest are exactly those an unskipped epoch yields after them.
        """
        import numpy as np

        rng = np.random.default_rng([self.seed, epoch])
        if self._cache is not None:
            yield from self._batches(self._cache, rng, skip=skip)
            return
        starts = np.arange(0, self.rows, self.block_rows)
        if self.shuffle:
            rng.shuffle(starts)
        with open_checked(self.path) as fh:
            datasets = {k: fh[self.split][k] for k in self.names}
            # One reusable buffer per array: the rows carried over from the previous block
            # (fewer than a batch) followed by the next block, read straight into place.
            buffers = {
                k: np.empty((self.block_rows + self.batch_size, *ds.shape[1:]), ds.dtype)
                for k, ds in datasets.items()
            }
            carry = 0
            for start in starts:
                stop = min(int(start) + self.block_rows, self.rows)
                for k, ds in datasets.items():
                    ds.read_direct(
                        buffers[k], np.s_[start:stop], np.s_[carry : carry + stop - start]
                    )
                filled = carry + stop - int(start)
                full = (filled // self.batch_size) * self.batch_size
                block = {k: b[:full] for k, b in buffers.items()}
                yield from self._batches(block, rng, True, skip)
                skip = max(skip - full // self.batch_size, 0)
                carry = filled - full
                for buffer in buffers.values():  # carry < batch_size <= full: no overlap
                    buffer[:carry] = buffer[full:filled]
            if carry:
                block = {k: b[:carry] for k, b in buffers.items()}
                yield from self._batches(block, rng, True, skip)

    def _batches(
        self,
        arrays: dict[str, np.ndarray],
        rng: np.random.Generator,
        reused: bool = False,
        skip: int = 0,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Batches of ``arrays`` but the first ``skip``; ``reused``: the arrays are a buffer
        that will be refilled, so unshuffled batches (views) are copied before they are
        handed out, as are views of the read-only shared split (a consumer may write into
        its batch). The permutation is drawn whatever ``skip`` is: later blocks see the
        same random stream."""
        n = len(arrays[self.names[0]])
        reused = reused or not all(v.flags.writeable for v in arrays.values())
        order = rng.permutation(n) if self.shuffle else None
        for start in range(skip * self.batch_size, n, self.batch_size):
            if order is None:
                window = slice(start, start + self.batch_size)
                yield {k: v[window].copy() if reused else v[window] for k, v in arrays.items()}
            else:
                take = order[start : start + self.batch_size]
                yield {k: v[take] for k, v in arrays.items()}

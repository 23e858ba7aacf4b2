"""data.h5: documented layout, validation of arrays, streaming within a memory budget."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from tasks.data.h5store import BatchStream, read_meta, write_splits
from tasks.errors import DataError

SPLIT = {"val": 0.1, "test": 0.2, "seed": 0}


def _write(path: Path, n: int = 1000, **arrays: np.ndarray) -> Path:
    arrays = arrays or {
        "x": np.arange(n * 3, dtype=np.float32).reshape(n, 3),
        "y": (np.arange(n) % 4).astype(np.int64),
    }
    write_splits(path, arrays, SPLIT, {"config_digest": "d" * 64}, where="test data")
    return path


def test_layout_and_metadata(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.h5")
    with h5py.File(path, "r") as fh:
        assert set(fh) == {"train", "val", "test"}
        assert [fh[s]["x"].shape[0] for s in ("train", "val", "test")] == [700, 100, 200]
        assert fh.attrs["num_classes"] == 4
    meta = read_meta(path)
    assert meta.task == "classification" and meta.input_shape == (3,)
    assert meta.rows == {"train": 700, "val": 100, "test": 200}


def test_every_row_lands_in_exactly_one_split(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.h5")
    with h5py.File(path, "r") as fh:
        ids = np.concatenate([fh[s]["x"][:, 0] for s in ("train", "val", "test")])
    assert sorted(ids.tolist()) == [3.0 * i for i in range(1000)]


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        pytest.param(
            {"x": np.array([[np.nan]] * 10, np.float32), "y": np.zeros(10, np.int64)},
            "NaN",
            id="nan",
        ),
        pytest.param(
            {"x": np.zeros((10, 2), np.float32), "y": np.zeros(9, np.int64)},
            "different lengths",
            id="lengths",
        ),
        pytest.param({"x": np.array(["a"] * 10)}, "only numbers", id="strings"),
    ],
)
def test_unusable_arrays_are_rejected(tmp_path: Path, arrays: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        write_splits(tmp_path / "d.h5", arrays, SPLIT, {}, where="test data")


@pytest.mark.parametrize("buffer_bytes", [1 << 30, 64 * 12], ids=["in-memory", "block-shuffle"])
def test_stream_covers_each_row_once_per_epoch(tmp_path: Path, buffer_bytes: int) -> None:
    path = _write(tmp_path / "data.h5")
    stream = BatchStream(path, "train", 32, seed=3, buffer_bytes=buffer_bytes)
    assert (stream._cache is None) == (buffer_bytes < 1 << 20)
    seen = np.concatenate([b["x"][:, 0] for b in stream.epoch(1)])
    with h5py.File(path, "r") as fh:
        expected = fh["train"]["x"][:, 0]
    assert sorted(seen.tolist()) == sorted(expected.tolist())
    again = np.concatenate([b["x"][:, 0] for b in stream.epoch(1)])
    other = np.concatenate([b["x"][:, 0] for b in stream.epoch(2)])
    assert np.array_equal(seen, again) and not np.array_equal(seen, other)


def test_unshuffled_stream_keeps_file_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.h5")
    stream = BatchStream(path, "test", 64, shuffle=False)
    rows = np.concatenate([b["y"] for b in stream.epoch(0)])
    with h5py.File(path, "r") as fh:
        assert np.array_equal(rows, fh["test"]["y"][()])
    assert len(stream) == 4


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffled", "file-order"])
@pytest.mark.parametrize("buffer_bytes", [1 << 30, 64 * 12], ids=["in-memory", "block-shuffle"])
def test_a_skipped_epoch_yields_the_rest_of_the_same_order(
    tmp_path: Path, buffer_bytes: int, shuffle: bool
) -> None:
    # 700 rows in batches of 32 (the last one 28); a block holds 64 rows when block-shuffled.
    stream = BatchStream(
        _write(tmp_path / "data.h5"), "train", 32, seed=3, buffer_bytes=buffer_bytes,
        shuffle=shuffle,
    )  # fmt: skip
    whole = [b["x"][:, 0].tolist() for b in stream.epoch(4)]
    assert len(whole) == len(stream) == 22
    for skip in (1, 2, 3, 13, 21, 22):
        assert [b["x"][:, 0].tolist() for b in stream.epoch(4, skip=skip)] == whole[skip:]

"""PrepareData's dtype rules: every numeric dtype is stored as float32 / int64, the rest refused."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import hypothesis
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tasks.data.dtypes import MAX_CLASSES, plan_storage
from tasks.data.h5store import read_meta, read_split, write_splits
from tasks.errors import DataError

WHERE = "data config d.yaml (loader 'npz')"
SPLIT = {"val": 0.2, "test": 0.2, "seed": 0}
FEATURE_DTYPES = [
    "float16", "float32", "float64", "longdouble",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool",
]  # fmt: skip
LABEL_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]
REFUSED = {
    "complex64": np.zeros(20, "complex64"),
    "complex128": np.ones(20, "complex128"),
    "object": np.array([1.0] * 20, dtype=object),
    "unicode": np.array(["a"] * 20),
    "bytes": np.array([b"a"] * 20),
    "datetime": np.zeros(20, "datetime64[s]"),
    "structured": np.zeros(20, [("a", "f4"), ("b", "i4")]),
}


def _x(dtype: str, n: int = 20) -> np.ndarray:
    return (np.arange(n * 3) % 2).reshape(n, 3).astype(dtype)


def _y(dtype: str, n: int = 20) -> np.ndarray:
    return (np.arange(n) % 2).astype(dtype)


@pytest.mark.parametrize("x_dtype", FEATURE_DTYPES)
@pytest.mark.parametrize("y_dtype", LABEL_DTYPES)
def test_every_numeric_pair_is_stored_as_float32_and_int64(
    x_dtype: str, y_dtype: str, tmp_path: Path
) -> None:
    arrays = {"x": _x(x_dtype), "y": _y(y_dtype)}
    plan = plan_storage(arrays, WHERE)
    assert plan.record() == {
        "x": {"source": str(np.dtype(x_dtype)), "stored": "float32"},
        "y": {"source": str(np.dtype(y_dtype)), "stored": "int64"},
    }
    meta = write_splits(tmp_path / "d.h5", arrays, SPLIT, {}, WHERE, dtypes=plan.stored)
    assert meta.task == "classification" and meta.num_classes == 2
    assert read_meta(tmp_path / "d.h5").arrays["x"]["dtype"] == "float32"
    with h5py.File(tmp_path / "d.h5", "r") as fh:
        assert fh["train"]["x"].dtype == np.float32 and fh["train"]["y"].dtype == np.int64
    stored = read_split(tmp_path / "d.h5", "train")
    assert set(np.unique(stored["x"])) <= {0.0, 1.0} and set(np.unique(stored["y"])) == {0, 1}


@pytest.mark.parametrize("y_dtype", ["float16", "float32", "float64"])
def test_float_targets_stay_float_regression(y_dtype: str, tmp_path: Path) -> None:
    arrays = {"x": _x("float64"), "y": np.linspace(-1, 1, 20).astype(y_dtype)}
    plan = plan_storage(arrays, WHERE)
    assert plan.stored == {"x": "float32", "y": "float32"}
    meta = write_splits(tmp_path / "d.h5", arrays, SPLIT, {}, WHERE, dtypes=plan.stored)
    assert meta.task == "regression" and meta.num_classes is None


@pytest.mark.parametrize("name", sorted(REFUSED))
@pytest.mark.parametrize("role", ["x", "y"])
def test_non_numeric_arrays_are_one_data_error(name: str, role: str) -> None:
    bad = REFUSED[name] if role == "y" else REFUSED[name].reshape(20, 1)
    arrays = {"x": _x("float32"), "y": _y("int64"), role: bad}
    with pytest.raises(DataError, match=rf"array '{role}' has dtype .* cannot be trained on"):
        plan_storage(arrays, WHERE)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros(20), "y": _y("int64")}, r"shape \(20,\).*x.reshape\(-1, 1\)"),
        ({"x": np.zeros((20, 0)), "y": _y("int64")}, r"zero-width"),
        ({"x": _x("float32"), "y": np.eye(2, dtype="int64")[_y("int64")]}, r"argmax\(axis=1\)"),
        ({"x": _x("float32"), "y": _y("int64").reshape(-1, 1)}, r"y.ravel\(\)"),
        ({"x": _x("float32"), "y": _y("int64") - 1}, r"non-negative"),
        ({"x": _x("float32"), "y": _y("int64") * 20}, r"21 classes for 20 rows"),
        ({"x": _x("float32", 200_000), "y": np.full(200_000, MAX_CLASSES)}, r"at most 100000"),
        ({"x": _x("float32"), "y": np.full(20, 2**63, "uint64")}, r"classes for 20 rows"),
        ({"x": _x("float32"), "y": list(range(20))}, r"is a list; return numpy arrays"),
        ({}, r"non-empty dict"),
    ],
    ids=[
        "1d-x", "zero-width-x", "one-hot-y", "column-y", "negative-y", "k-above-rows",
        "k-above-limit", "uint64-huge", "list", "empty",
    ],
)  # fmt: skip
def test_unusable_shapes_and_labels_are_one_data_error(
    arrays: dict[str, object], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        plan_storage(arrays, WHERE)


def test_float64_beyond_float32_range_is_refused(tmp_path: Path) -> None:
    arrays = {"x": np.full((20, 2), 1e300), "y": _y("int64")}
    plan = plan_storage(arrays, WHERE)
    with pytest.raises(DataError, match="beyond the range of float32"):
        write_splits(tmp_path / "d.h5", arrays, SPLIT, {}, WHERE, dtypes=plan.stored)


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(
        st.one_of(
            hnp.integer_dtypes(),
            hnp.unsigned_integer_dtypes(),
            hnp.floating_dtypes(),
            hnp.boolean_dtypes(),
        ),
        st.tuples(st.integers(3, 12), st.integers(1, 4)),
        elements={"allow_nan": False, "allow_infinity": False},
    ),
    labels=st.lists(st.integers(0, 2), min_size=12, max_size=12),
    label_dtype=st.sampled_from(LABEL_DTYPES[:-1]),
)
def test_casting_keeps_values(x: np.ndarray, labels: list[int], label_dtype: str) -> None:
    """Finite numeric features keep their values (as float32) or, beyond float32's range, are
    refused; labels keep their class ids."""
    y = np.asarray(labels[: len(x)], dtype=label_dtype)
    hypothesis.assume(int(y.max()) + 1 <= len(y))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.h5"
        plan = plan_storage({"x": x, "y": y}, WHERE)
        split = {"val": 0.0, "test": 0.0, "seed": 0}
        if not np.all(np.abs(x.astype(np.float64)) <= np.finfo(np.float32).max):
            with pytest.raises(DataError, match="beyond the range of float32"):
                write_splits(path, {"x": x, "y": y}, split, {}, WHERE, dtypes=plan.stored)
            return
        write_splits(path, {"x": x, "y": y}, split, {}, WHERE, dtypes=plan.stored)
        stored = read_split(path, "train")
    # x's rows come back in the stored order (all rows are train rows, sorted indices).
    np.testing.assert_array_equal(stored["x"], x.astype(np.float32))
    np.testing.assert_array_equal(stored["y"], y.astype(np.int64))

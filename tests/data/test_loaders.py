"""The built-in generated and bundled datasets: scikit-learn's rows, without importing it.

``moons`` draws with numpy what ``sklearn.datasets.make_moons`` draws, and ``digits`` reads
the file ``load_digits`` reads, so data prepared by either agrees; preparing them no longer
imports scikit-learn (about a second per process).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.data import loaders
from tasks.errors import DataError
from tests.support import REPO

sklearn_datasets = pytest.importorskip("sklearn.datasets")


@settings(max_examples=60, deadline=None)
@given(
    n_samples=st.integers(1, 3000),
    noise=st.one_of(st.floats(0.0, 5.0), st.integers(0, 3)),
    seed=st.integers(0, 2**32 - 1),
)
def test_moons_equal_scikit_learns(n_samples: int, noise: float, seed: int) -> None:
    x, y = sklearn_datasets.make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    ours = loaders.moons(n_samples=n_samples, noise=noise, seed=seed)
    assert ours["x"].dtype == np.float32 and ours["y"].dtype == np.int64
    np.testing.assert_array_equal(ours["x"], x.astype(np.float32))
    np.testing.assert_array_equal(ours["y"], y.astype(np.int64))


@pytest.mark.parametrize("kind", [np.int64, np.int32, np.uint32], ids=["int64", "int32", "uint32"])
def test_moons_take_numpy_scalars(kind: type) -> None:
    # Parameters from a user's own code may be numpy scalars: valid, as for make_moons.
    x, y = sklearn_datasets.make_moons(n_samples=101, noise=0.2, random_state=7)
    ours = loaders.moons(n_samples=kind(101), noise=np.float64(0.2), seed=kind(7))
    np.testing.assert_array_equal(ours["x"], x.astype(np.float32))
    np.testing.assert_array_equal(ours["y"], y)
    assert loaders.moons(n_samples=10, noise=np.float32(0.5))["x"].shape == (10, 2)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_samples": 0}, "n_samples is 0"),
        ({"n_samples": 2.5}, "n_samples is 2.5"),
        ({"n_samples": True}, "n_samples is True"),
        ({"noise": -0.1}, "noise is -0.1"),
        ({"noise": float("inf")}, "noise is inf"),
        ({"noise": "0.1"}, "noise is '0.1'"),
        ({"seed": -1}, "seed is -1"),
        ({"seed": 2**32}, "seed is 4294967296"),
        ({"seed": 0.5}, "seed is 0.5"),
        ({"n_samples": np.bool_(True)}, "n_samples is np.True_"),
    ],
)
def test_moons_refuse_what_make_moons_refuses(params: dict[str, object], match: str) -> None:
    with pytest.raises(DataError, match=match):
        loaders.moons(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize("as_image", [False, True])
def test_digits_equal_load_digits(as_image: bool) -> None:
    bunch = sklearn_datasets.load_digits()
    ours = loaders.digits(as_image=as_image)
    x = (bunch.data / 16.0).astype(np.float32)
    np.testing.assert_array_equal(ours["x"], x.reshape(-1, 8, 8, 1) if as_image else x)
    np.testing.assert_array_equal(ours["y"], bunch.target.astype(np.int64))
    assert ours["x"].shape[0] == 1797 and set(ours["y"].tolist()) == set(range(10))


def test_digits_without_the_bundled_file_ask_scikit_learn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A scikit-learn whose file is elsewhere: the loader falls back to load_digits itself.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    ours = loaders.digits()
    bunch = sklearn_datasets.load_digits()
    np.testing.assert_array_equal(ours["y"], bunch.target.astype(np.int64))
    np.testing.assert_array_equal(ours["x"], (bunch.data / 16.0).astype(np.float32))


def test_preparing_digits_and_moons_never_imports_scikit_learn() -> None:
    code = (
        "import sys\n"
        "from tasks.data.loaders import digits, moons, blobs\n"
        "digits(); moons(n_samples=50)\n"
        "assert 'sklearn' not in sys.modules and 'scipy' not in sys.modules, 'imported'\n"
        "blobs(n_samples=50)\n"  # the control: blobs still draws with scikit-learn
        "assert 'sklearn' in sys.modules, 'the check cannot see imports'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr

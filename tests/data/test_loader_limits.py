"""File loaders read declared sizes first: a lying or huge header is a DataError, not a crash."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from tasks.data import loaders
from tasks.data.limits import max_data_bytes
from tasks.errors import DataError
from tests.support import npz_declaring


def huge_hdf5(path: Path, rows: int) -> Path:
    """An HDF5 file with a chunked, never-written ``x`` declaring ``rows`` × 1000 float64."""
    with h5py.File(path, "w") as fh:
        fh.create_dataset("x", shape=(rows, 1000), dtype="f8", chunks=(1, 1000))
        fh["y"] = np.zeros(8, np.int64)
    return path


def test_limit_defaults_to_half_the_physical_memory() -> None:
    import os

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert max_data_bytes() == physical // 2


def test_npz_header_declaring_terabytes_is_refused_before_allocating(tmp_path: Path) -> None:
    path = npz_declaring(tmp_path / "d.npz", (10**12, 10))
    with pytest.raises(DataError, match=r"would need .* MiB of memory.*max_data_mb"):
        loaders.npz(str(path))


def test_npz_header_larger_than_its_data_is_refused(tmp_path: Path) -> None:
    path = npz_declaring(tmp_path / "d.npz", (1000, 4))
    with pytest.raises(DataError, match=r"declares shape \(1000, 4\).*32,000 bytes.*holds 64"):
        loaders.npz(str(path))


def test_honest_npz_loads_only_the_named_arrays(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((5, 2)), y=np.arange(5), other=np.zeros(3))
    out = loaders.npz(str(path))
    assert sorted(out) == ["x", "y"] and out["x"].dtype == np.float64


def test_hdf5_dataset_declaring_terabytes_is_refused(tmp_path: Path) -> None:
    path = huge_hdf5(tmp_path / "d.h5", 10**9)  # 8 TB declared, a few KB on disk
    assert path.stat().st_size < 1 << 20
    with pytest.raises(DataError, match=r"dataset 'x' \(shape \(1000000000, 1000\).*MiB"):
        loaders.hdf5(str(path))


def test_configured_limit_applies(tmp_path: Path) -> None:
    import luigi

    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((2000, 100)), y=np.arange(2000))  # 1.6 MB of x
    config = luigi.configuration.get_config()
    if not config.has_section("forge"):
        config.add_section("forge")
    config.set("forge", "max_data_mb", "1")
    try:
        with pytest.raises(DataError, match="more than the limit of 1 MiB"):
            loaders.npz(str(path))
    finally:
        config.remove_option("forge", "max_data_mb")
    assert loaders.npz(str(path))["x"].shape == (2000, 100)


_UNGUARDED_READ = """
import resource, sys
import numpy as np, h5py
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # keep the harm in a cage
path = sys.argv[1]
try:
    if path.endswith(".npz"):
        np.load(path)["x"]
    else:
        h5py.File(path, "r")["x"][()]
except MemoryError as err:
    print("MemoryError", err)
"""


@pytest.mark.parametrize("kind", ["npz", "h5"])
def test_control_without_the_guard_the_file_asks_for_terabytes(kind: str, tmp_path: Path) -> None:
    """The crafted files really are harmful: read unguarded, they try a huge allocation."""
    import subprocess
    import sys

    path = tmp_path / f"d.{kind}"
    npz_declaring(path, (10**12, 10)) if kind == "npz" else huge_hdf5(path, 10**9)
    proc = subprocess.run(
        [sys.executable, "-c", _UNGUARDED_READ, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "MemoryError" in proc.stdout, proc.stdout + proc.stderr
    assert "TiB" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,y\n", "has a header but no data rows"),
        ("a,b,y\n1,2\n3,4\n", "header names 3 columns but the rows have 2"),
    ],
    ids=["header-only", "short-rows"],
)
def test_malformed_csv_is_one_data_error(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        loaders.csv(str(path))

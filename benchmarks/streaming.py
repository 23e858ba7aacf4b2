"""Data streaming from ``data.h5``: BatchStream throughput and peak memory.

Throughput: three shuffled epochs of batches from a freshly opened :class:`BatchStream`
(opening and reading the file included) against the same number of shuffled batches gathered
from the arrays already in memory, in two regimes: the split fits the memory budget (read
once, cached), and it does not (block shuffle from disk with a small budget). Memory: a
child process streams one epoch of a file several times larger than the budget, and reports
how much its peak resident set grew.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._data import make_arrays, write_data_h5
from benchmarks.harness import Target, interleaved, not_available, row, timed

__all__ = ["run"]

FEATURES = 64
BATCH = 128
EPOCHS = 3
ROW_BYTES = FEATURES * 4 + 8
THROUGHPUT_TARGET = Target(">=", 0.8)
MIB = 1 << 20


def _in_memory_epoch(arrays: dict[str, np.ndarray], epoch: int) -> int:
    """The plain-numpy reference: shuffled batches gathered from in-memory arrays."""
    n = len(arrays["x"])
    order = np.random.default_rng([0, epoch]).permutation(n)
    batches = 0
    for start in range(0, n, BATCH):
        take = order[start : start + BATCH]
        batch = {k: v[take] for k, v in arrays.items()}
        batches += len(batch["x"]) > 0
    return batches


def _throughput_rows(
    path: Path, arrays: dict[str, np.ndarray], budget: int, repeats: int, label: str
) -> dict[str, Any]:
    from tasks.data.h5store import BatchStream, clear_read_memos

    rows = len(arrays["x"])

    def streamed() -> float:
        def work() -> None:
            clear_read_memos()  # read from disk, as a fresh process does
            stream = BatchStream(path, "train", BATCH, shuffle=True, seed=0, buffer_bytes=budget)
            for epoch in range(1, EPOCHS + 1):
                for _ in stream.epoch(epoch):
                    pass

        return EPOCHS * rows / timed(work)

    def in_memory() -> float:
        def work() -> None:
            for epoch in range(1, EPOCHS + 1):
                _in_memory_epoch(arrays, epoch)

        return EPOCHS * rows / timed(work)

    cand, base = interleaved(streamed, in_memory, repeats)
    return row(
        f"streaming, {label}",
        "rows/s",
        cand,
        base,
        THROUGHPUT_TARGET,
        note=f"{EPOCHS} epochs of {rows} rows x {FEATURES} float32, batch {BATCH}, "
        f"budget {budget // MIB} MiB, "
        f"file {path.stat().st_size / MIB:.0f} MiB",
    )


_CHILD = r"""
import json, sys
import h5py
import numpy as np
from tasks.data.h5store import BatchStream


def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))


path, budget = sys.argv[1], int(sys.argv[2])
with h5py.File(path, "r") as fh:  # load HDF5's libraries before measuring
    fh["train"]["y"][:1]
np.random.default_rng([0, 1]).permutation(10)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak (VmHWM) to the current resident set
rows = 0
stream = BatchStream(path, "train", 128, shuffle=True, seed=0, buffer_bytes=budget)
for batch in stream.epoch(1):
    rows += len(batch["x"])
print(json.dumps({"rows": rows, "growth_kib": status("VmHWM") - before,
                  "cached": stream._cache is not None}))
"""


def _peak_growth(path: Path, budget: int) -> dict[str, Any]:
    """Stream one epoch of ``path`` in a fresh process; its peak RSS growth and row count."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(budget)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed: {proc.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _peak_memory_row(path: Path, rows: int, budget: int) -> dict[str, Any]:
    """Peak RSS growth streaming within ``budget`` vs loading the split whole (Linux only)."""
    if not Path("/proc/self/clear_refs").exists():
        return not_available("streaming, peak memory", "needs Linux /proc to measure peak RSS")
    streamed = _peak_growth(path, budget)
    whole = _peak_growth(path, 1 << 40)
    growth = streamed["growth_kib"] * 1024
    bound = 4 * budget
    ok = streamed["rows"] == rows and not streamed["cached"] and growth <= bound
    return {
        "name": "streaming, peak memory",
        "metric": "peak RSS growth, MiB",
        "status": "ok",
        "candidate_median": growth / MIB,
        "baseline_median": whole["growth_kib"] / 1024,
        "spread": None,
        "ratio": growth / max(1, whole["growth_kib"] * 1024),
        "target": f"cand. <= {bound // MIB} MiB (4x budget)",
        "met": ok,
        "repeats": 1,
        "note": f"budget {budget // MIB} MiB, file {path.stat().st_size / MIB:.0f} MiB; baseline = "
        f"the same epoch with the split loaded whole; streamed {streamed['rows']}/{rows} rows",
    }


def run(quick: bool) -> list[dict[str, Any]]:
    """Throughput rows (cached and streamed) and the peak-memory row."""
    small_rows = 50_000 if quick else 200_000
    big_mib, budget_mib = (48, 4) if quick else (256, 16)
    repeats = 3 if quick else 7
    out = []
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        small = make_arrays(small_rows)
        small_path = Path(tmp) / "small.h5"
        write_data_h5(small_path, small)
        out.append(_throughput_rows(small_path, small, 1 << 30, repeats, "fits budget"))
        big_rows = big_mib * MIB // ROW_BYTES
        big = make_arrays(big_rows, seed=1)
        big_path = Path(tmp) / "big.h5"
        write_data_h5(big_path, big)
        out.append(_throughput_rows(big_path, big, budget_mib * MIB, repeats, "block shuffle"))
        del big
        out.append(_peak_memory_row(big_path, big_rows, budget_mib * MIB))
    return out

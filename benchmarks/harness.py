"""Measure a candidate against a baseline, interleaved, and turn the samples into a table row.

Both sides are run ``repeats`` times in the same process, alternating which goes first
(ABBA order), so load from other processes on a shared machine hits both alike. A row
reports the median and interquartile range (IQR) of each side, the ratio of the medians,
and whether the target is met.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = [
    "Target",
    "interleaved",
    "iqr",
    "median",
    "not_available",
    "row",
    "format_table",
    "timed",
]

Measure = Callable[[], float]


@dataclass(frozen=True)
class Target:
    """A limit on a row: ``on`` (``ratio`` or ``candidate``) ``op`` (``<=``/``>=``) ``value``."""

    op: Literal["<=", ">="]
    value: float
    on: Literal["ratio", "candidate"] = "ratio"
    unit: str = "x"

    def met(self, ratio: float, candidate: float) -> bool:
        """Whether the measured ratio (or candidate median) satisfies the target."""
        measured = ratio if self.on == "ratio" else candidate
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def __str__(self) -> str:
        subject = "ratio" if self.on == "ratio" else "cand."
        return f"{subject} {self.op} {self.value:g}{self.unit}"


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (at least one)."""
    return float(statistics.median(values))


def iqr(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartiles (inclusive method); a single value gives ``(v, v)``."""
    if len(values) < 2:
        return float(values[0]), float(values[0])
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return float(q1), float(q3)


def timed(func: Callable[[], Any]) -> float:
    """Wall seconds one call of ``func`` takes (garbage collected first, not during)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        func()
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()


def interleaved(
    candidate: Measure, baseline: Measure, repeats: int, warmup: int = 1
) -> tuple[list[float], list[float]]:
    """Run both measurements ``repeats`` times, alternating which goes first.

    Args:
        candidate: returns one sample (seconds, or a rate) per call.
        baseline: the same for the reference implementation.
        repeats: samples kept per side.
        warmup: untimed rounds of both first (imports, caches, allocator).

    Returns:
        The candidate's and the baseline's samples.
    """
    for _ in range(warmup):
        candidate()
        baseline()
    cand: list[float] = []
    base: list[float] = []
    for i in range(repeats):
        if i % 2 == 0:
            cand.append(candidate())
            base.append(baseline())
        else:
            base.append(baseline())
            cand.append(candidate())
    return cand, base


def row(
    name: str,
    metric: str,
    candidate: Sequence[float],
    baseline: Sequence[float],
    target: Target,
    note: str = "",
) -> dict[str, Any]:
    """A table row from the samples of both sides.

    ``ratio`` is ``median(candidate) / median(baseline)``; for a time that is the slowdown,
    for a throughput the fraction of the baseline's rate achieved.
    """
    cand_med, base_med = median(candidate), median(baseline)
    ratio = cand_med / base_med if base_med else float("inf")
    return {
        "name": name,
        "metric": metric,
        "status": "ok",
        "candidate_median": cand_med,
        "baseline_median": base_med,
        "spread": {"candidate_iqr": list(iqr(candidate)), "baseline_iqr": list(iqr(baseline))},
        "ratio": ratio,
        "target": str(target),
        "target_spec": asdict(target),
        "met": target.met(ratio, cand_med),
        "repeats": len(candidate),
        "note": note,
    }


def not_available(
    name: str, reason: str, target: str = "", status: str = "not available"
) -> dict[str, Any]:
    """A row for a benchmark that could not run (missing module, backend not installed...)."""
    return {
        "name": name,
        "metric": "",
        "status": status,
        "candidate_median": None,
        "baseline_median": None,
        "spread": None,
        "ratio": None,
        "target": target,
        "met": None,
        "repeats": 0,
        "note": reason,
    }


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or 0.001 <= abs(value) < 100_000:
        return f"{value:.4g}"
    return f"{value:.3g}"


def _spread(values: list[float] | None) -> str:
    return "-" if not values else f"{_num(values[0])}–{_num(values[1])}"


def format_table(rows: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """The rows as an aligned text table (or a Markdown table)."""
    header = [
        "benchmark",
        "metric",
        "candidate",
        "cand. IQR",
        "baseline",
        "base. IQR",
        "ratio",
        "target",
        "met",
    ]
    lines = []
    for r in rows:
        spread = r.get("spread") or {}
        met = {True: "yes", False: "NO", None: r["status"]}[r["met"]]
        lines.append(
            [
                r["name"],
                r["metric"],
                _num(r["candidate_median"]),
                _spread(spread.get("candidate_iqr")),
                _num(r["baseline_median"]),
                _spread(spread.get("baseline_iqr")),
                "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
                r["target"] or "-",
                met,
            ]
        )
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        notes = [f"- **{r['name']}**: {r['note']}" for r in rows if r.get("note")]
        return "\n".join(out + ([""] + notes if notes else []))
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*cells) for cells in lines]
    notes = [f"  {r['name']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(out + ([""] + notes if notes else []))

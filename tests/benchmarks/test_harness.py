"""The benchmark harness's statistics and rows, on given numbers (no timing)."""

from __future__ import annotations

import pytest

from benchmarks.harness import Target, format_table, interleaved, iqr, median, not_available, row


def test_median_of_odd_and_even_counts() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_iqr_uses_inclusive_quartiles() -> None:
    assert iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 4.0)
    assert iqr([7.0]) == (7.0, 7.0)


def test_row_reports_ratio_of_medians_and_spread() -> None:
    r = row("x", "s", [1.0, 1.2, 1.1], [1.0, 1.0, 1.0], Target("<=", 1.03))
    assert r["candidate_median"] == pytest.approx(1.1)
    assert r["baseline_median"] == 1.0
    assert r["ratio"] == pytest.approx(1.1)
    assert r["spread"]["candidate_iqr"] == pytest.approx([1.05, 1.15])
    assert r["met"] is False


@pytest.mark.parametrize(
    ("target", "candidate", "baseline", "met"),
    [
        pytest.param(Target(">=", 0.8), [9.0], [10.0], True, id="throughput-met"),
        pytest.param(Target(">=", 0.8), [7.0], [10.0], False, id="throughput-missed"),
        pytest.param(Target("<=", 0.5, on="candidate"), [0.4], [0.1], True, id="absolute-met"),
        pytest.param(Target("<=", 0.5, on="candidate"), [0.6], [9.0], False, id="absolute-missed"),
    ],
)
def test_target_direction_and_subject(
    target: Target, candidate: list[float], baseline: list[float], met: bool
) -> None:
    assert row("x", "m", candidate, baseline, target)["met"] is met


def test_interleaved_alternates_order_after_warmup() -> None:
    calls: list[str] = []

    def cand() -> float:
        calls.append("c")
        return 1.0

    def base() -> float:
        calls.append("b")
        return 2.0

    c, b = interleaved(cand, base, repeats=3, warmup=1)
    assert (c, b) == ([1.0] * 3, [2.0] * 3)
    assert calls == ["c", "b", "c", "b", "b", "c", "c", "b"]


def test_table_lists_unavailable_rows() -> None:
    rows = [row("a", "s", [1.0], [1.0], Target("<=", 1.03)), not_available("b", "missing")]
    text = format_table(rows)
    assert "not available" in text and "b: missing" in text
    assert format_table(rows, markdown=True).startswith("| benchmark |")

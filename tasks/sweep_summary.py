"""The summary of a sweep: one row per experiment, written as CSV, JSON and a text table.

Rows are built from what is on disk (an experiment is done when its Evaluate directory
holds ``_SUCCESS``), plus the failures that shards recorded, so a summary written by any
process at any time describes the sweep as it stands.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.store.atomic import atomic_write_text
from tasks.store.jsonio import dumps_json
from tasks.store.names import SUCCESS
from tasks.store.records import EvalRecord, json_text

__all__ = ["SUMMARY_CSV", "SUMMARY_JSON", "SUMMARY_TXT", "format_table", "write_summary"]

SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_TXT = "summary.txt"
_TABLE_WIDTH = 40


def _metrics(eval_dir: Path) -> dict[str, Any]:
    record = EvalRecord.read(eval_dir)
    split = record.split or "test"
    return {f"{split}_{k}": v for k, v in sorted(record.metrics.items())}


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return dumps_json(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """An aligned plain-text table of ``rows`` (cells cut to a readable width)."""
    cells = [[_text(row.get(c, ""))[:_TABLE_WIDTH] for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"


def build_rows(
    experiments: Iterable[Mapping[str, Any]], failures: Mapping[str, Mapping[str, str]]
) -> list[dict[str, Any]]:
    """One summary row per experiment.

    Args:
        experiments: per experiment ``id``, ``experiment`` and ``eval_dir`` (Paths),
            ``framework``, names and the swept ``values``.
        failures: experiment id → ``{"step": ..., "error": ...}`` recorded by shards.
    """
    rows = []
    for exp in experiments:
        eval_dir: Path = exp["eval_dir"]
        done = (eval_dir / SUCCESS).is_file()
        failure = failures.get(exp["id"], {}) if not done else {}
        status = "done" if done else ("failed" if failure else "pending")
        row: dict[str, Any] = {
            "experiment": exp["experiment"],
            "framework": exp["framework"],
            **exp["names"],
            **exp["values"],
            "status": status,
            "failed_step": failure.get("step", ""),
            "error": failure.get("error", ""),
        }
        row.update(_metrics(eval_dir) if done else {})
        rows.append(row)
    return rows


def write_summary(directory: Path, rows: list[dict[str, Any]], header: Mapping[str, Any]) -> str:
    """Write ``summary.csv``, ``summary.json`` and ``summary.txt``; return the text table."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: v if isinstance(v, str | int | float) else dumps_json(v) for k, v in row.items()}
        )
    atomic_write_text(directory / SUMMARY_CSV, buffer.getvalue())
    atomic_write_text(directory / SUMMARY_JSON, json_text({**header, "experiments": rows}))
    shown = [c for c in columns if c not in ("data", "model", "train", "eval", "error")]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "pending")}
    text = format_table(rows, shown)
    text += f"\n{len(rows)} experiments: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        text += "\nfailed:\n" + "".join(
            f"  {r['experiment']} ({r['failed_step']}): {r['error']}\n" for r in failed
        )
    else:
        text += "\n"
    atomic_write_text(directory / SUMMARY_TXT, text)
    return text

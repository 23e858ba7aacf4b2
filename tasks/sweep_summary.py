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

from tasks.search.study import DIED
from tasks.store.atomic import atomic_write_text
from tasks.store.jsonio import dumps_json
from tasks.store.names import SUCCESS
from tasks.store.records import EvalRecord, json_text

__all__ = [
    "SUMMARY_CSV",
    "SUMMARY_JSON",
    "SUMMARY_TXT",
    "format_table",
    "read_search_summary",
    "search_rows",
    "write_search_summary",
    "write_summary",
]

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


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key of ``rows``, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def _csv_text(rows: Sequence[Mapping[str, Any]], columns: list[str]) -> io.StringIO:
    """``rows`` as CSV (non-scalar cells as JSON) in a buffer."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: v if isinstance(v, str | int | float) else dumps_json(v) for k, v in row.items()}
        )
    return buffer


def write_summary(directory: Path, rows: list[dict[str, Any]], header: Mapping[str, Any]) -> str:
    """Write ``summary.csv``, ``summary.json`` and ``summary.txt``; return the text table."""
    columns = _columns(rows)
    buffer = _csv_text(rows, columns)
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


_STATE_ORDER = {"complete": 0, "pruned": 1, "running": 2, "waiting": 3, "fail": 4}
# A trial whose worker died or was preempted: not a failure, and not counted; its
# parameters were asked again as a new trial, which continued its experiment.
INTERRUPTED = "interrupted"


def search_rows(trials: Iterable[Mapping[str, Any]], direction: str) -> list[dict[str, Any]]:
    """One row per trial, best first: complete trials by value, then pruned, running,
    failed, and last the interrupted ones (:data:`INTERRUPTED`).

    Args:
        trials: per trial ``number``, ``state`` (Optuna's, lower case), ``params``,
            ``value`` and ``user_attrs`` (``experiment``, ``error``, ``forge_end``,
            ``retry_of``).
        direction: ``maximize`` or ``minimize``.
    """
    trials = list(trials)
    retried = {
        t.get("user_attrs", {}).get("retry_of"): t["number"]
        for t in trials
        if t.get("user_attrs", {}).get("retry_of") is not None
    }
    sign = -1.0 if direction == "maximize" else 1.0
    rows = []
    for trial in trials:
        attrs = trial.get("user_attrs", {})
        state = str(trial["state"])
        value = trial.get("value")
        shown = "failed" if state == "fail" else state
        error = attrs.get("error", "")
        order = _STATE_ORDER.get(state, 5)
        if state == "fail" and attrs.get("forge_end") == DIED:
            shown, order = INTERRUPTED, 6
            again = retried.get(trial["number"])
            error = DIED + (f"; asked again as trial {again}" if again is not None else "")
        row: dict[str, Any] = {
            "trial": trial["number"],
            "state": shown,
            "value": value,
            **trial.get("params", {}),
            "epochs": len(trial.get("intermediate", {})),
            "experiment": attrs.get("experiment", ""),
            "error": error,
        }
        rank = sign * value if isinstance(value, int | float) else float("inf")
        rows.append((order, rank, trial["number"], row))
    return [row for *_, row in sorted(rows, key=lambda r: r[:3])]


def write_search_summary(
    directory: Path,
    trials: Iterable[Mapping[str, Any]],
    header: Mapping[str, Any],
    search: Any,
    budget: int,
) -> str:
    """Write a search's ``summary.csv/json/txt`` (one row per trial, best first)."""
    rows = search_rows(trials, search.direction)
    columns = _columns(rows)
    buffer = _csv_text(rows, columns)
    info = {
        **header,
        "metric": search.metric,
        "direction": search.direction,
        "sampler": search.sampler,
        "pruner": search.pruner,
        "trials": budget,
    }
    atomic_write_text(directory / SUMMARY_CSV, buffer.getvalue())
    atomic_write_text(directory / SUMMARY_JSON, json_text({**info, "trials_table": rows}))
    shown = [c for c in columns if c != "error"]
    text = f"{search.direction} {search.metric} ({search.sampler}, pruner {search.pruner})\n"
    text += format_table(rows, shown)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    text += f"\n{len(rows)} trials of {budget}: " + ", ".join(
        f"{n} {s}" for s, n in sorted(counts.items())
    )
    failed = [r for r in rows if r["state"] == "failed"]
    text += (
        "\nfailed:\n" + "".join(f"  trial {r['trial']}: {r['error']}\n" for r in failed)
        if failed
        else "\n"
    )
    atomic_write_text(directory / SUMMARY_TXT, text)
    return text


def read_search_summary(directory: Path) -> dict[str, Any]:
    """A search's ``summary.json``: metric, direction and the trials table.

    Raises:
        ExperimentNotFoundError: ``directory`` holds no search summary (or a damaged one).
    """
    from tasks.errors import ExperimentNotFoundError
    from tasks.store.records import read_json_object

    data, damage = read_json_object(directory / SUMMARY_JSON)
    if damage is not None or not isinstance(data.get("trials_table"), list):
        why = "not a search summary" if damage is None else damage
        raise ExperimentNotFoundError(
            f"{directory / SUMMARY_JSON}: {why}; pass the folder of a search under "
            "<results>/sweeps/ (it is written as soon as a search has finished a trial)"
        )
    return data

"""``metrics.csv``: one row per epoch, appended as training goes, trimmed on resume."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path

from tasks.store.atomic import atomic_write_text, storage_errors

__all__ = ["MetricsLog", "read_metrics"]


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a metrics.csv as dicts of floats (``epoch`` as a whole number)."""
    if not path.is_file():
        return []
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    rows.append(
                        {
                            k: float(v)
                            for k, v in row.items()
                            if k is not None and v not in ("", None)
                        }
                    )
                except (ValueError, TypeError):
                    continue  # a torn last line from a crash, or a damaged row
    except (OSError, UnicodeDecodeError, csv.Error):
        pass  # what was read so far stands; the damaged rest is skipped
    return rows


class MetricsLog:
    """Appends epoch rows to ``metrics.csv``; columns are fixed by the first row written."""

    def __init__(self, path: Path, resume_after: int) -> None:
        self.path = path
        rows = [r for r in read_metrics(path) if r.get("epoch", 0) <= resume_after]
        self.columns: list[str] | None = list(rows[0]) if rows else None
        self.rows = rows
        if self.columns is not None:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=self.columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _fmt(k, row.get(k)) for k in self.columns})
            atomic_write_text(path, buffer.getvalue())
        elif path.exists():
            path.unlink()

    def append(self, epoch: int, values: Mapping[str, float]) -> None:
        row = {"epoch": float(epoch), **{k: float(v) for k, v in values.items()}}
        with storage_errors(str(self.path)):
            new_file = self.columns is None
            if self.columns is None:
                self.columns = list(row)
            with self.path.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
                if new_file:
                    writer.writeheader()
                writer.writerow({k: _fmt(k, row.get(k)) for k in self.columns})
                fh.flush()
                os.fsync(fh.fileno())
        self.rows.append(row)


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return ""
    if key == "epoch":
        return str(int(value))
    return repr(float(value))

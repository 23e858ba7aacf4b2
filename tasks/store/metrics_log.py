"""``metrics.csv``: one row per epoch, appended as training goes, trimmed on resume."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

from tasks.store.atomic import atomic_write_text, storage_errors, sync_file
from tasks.store.records import MISSING, read_stored_bytes

__all__ = ["MetricsLog", "read_metrics", "read_metrics_checked"]


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a metrics.csv as dicts of floats (``epoch`` as a whole number).

    Tolerant: rows that cannot be read (a torn last line from a crash, a damaged row) are
    left out; :func:`read_metrics_checked` also says what was wrong.
    """
    return read_metrics_checked(path)[0]


def read_metrics_checked(path: Path) -> tuple[list[dict[str, float]], str | None]:
    """The readable rows of a metrics.csv, and a one-line reason when any is damaged.

    The reason is None for a good or absent file; else it names the file and the first
    problem (not UTF-8, a symbolic link, row N has a value that is not a number, ...).
    """
    raw, why = read_stored_bytes(path)
    if why == MISSING:
        return [], None
    if why is not None:
        return [], why
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [], f"{path.name}: not UTF-8 text"
    rows: list[dict[str, float]] = []
    problem: str | None = None
    try:
        for number, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
            try:
                if None in row or None in row.values():
                    raise ValueError("wrong number of fields")
                rows.append({k: float(v) for k, v in row.items() if v != ""})
            except (ValueError, TypeError) as err:
                problem = problem or f"{path.name}: line {number} is not a row of numbers ({err})"
    except csv.Error as err:
        problem = problem or f"{path.name}: not valid CSV ({err})"
    return rows, problem


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
        self.rows.append(row)

    def sync(self) -> None:
        """fsync the rows appended so far (and the folder entry of a new file).

        Appending does not sync: a row only has to be durable once a checkpoint covering
        its epoch commits (a resumed run trims the rows after its checkpoint) or training
        ends, and the checkpoint thread calls this before it commits.
        """
        if self.columns is None:
            return
        with storage_errors(str(self.path)):
            sync_file(self.path)


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return ""
    if key == "epoch":
        return str(int(value))
    return repr(float(value))

"""Turn experiment records into the ``forge ls`` table: columns, cells, and the formats
(plain text fitted to the terminal width, a rich table on a TTY, CSV and JSON)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tasks.cli.query import SUMMARY_KEYS, value_of
from tasks.store.jsonio import dumps_json
from tasks.store.summary import DELTA_KEYS, Record, unflatten

__all__ = [
    "Column",
    "default_columns",
    "differing_keys",
    "fit_columns",
    "cell",
    "cells",
    "format_value",
    "named_columns",
    "public_record",
    "render_csv",
    "render_json",
    "render_plain",
    "render_rich",
]

_MAX_CELL = 22
_SEP = "  "
# Config keys that other columns already show, or that only restate identity.
_SHOWN_ELSEWHERE = {"model.framework"}
_ABBREVIATIONS = {"accuracy": "acc"}


@dataclass(frozen=True)
class Column:
    """One table column: the key it shows, its header, and how readily it is dropped."""

    key: str
    header: str
    priority: float = 50  # lower is kept first when the width is short


def format_value(value: Any) -> str:
    """A short, stable text for a cell (floats to 4 significant digits, lists compact)."""
    kind = type(value)
    if kind is str:
        return str(value)
    if kind is float:
        return f"{value:.4g}"
    if value is None:
        return "-"
    if kind is bool:
        return "true" if value else "false"
    if kind is list and all(type(v) is int for v in value):
        return "[" + ",".join(map(str, value)) + "]"  # the common case, without json
    if isinstance(value, list | dict):
        return dumps_json(value, separators=(",", ":"))
    return str(value)


def _getter(key: str) -> Callable[[Record], Any]:
    """A fast ``record -> value`` for ``key`` (chosen once per column, not per cell)."""
    if key == "best":
        return lambda r: (r.get("best") or {}).get("value")
    if key == "best_metric":
        return lambda r: (r.get("best") or {}).get("metric")
    if key in SUMMARY_KEYS:
        return lambda r: r.get(key)  # what value_of returns for the other summary keys
    if key.startswith("run."):
        sub = key[4:]
        return lambda r: (r.get("run") or {}).get(sub)

    def get(record: Record) -> Any:
        metrics = record.get("metrics")
        if metrics and key in metrics:
            return metrics[key]
        config = record.get("config")
        if config and key in config:
            return config[key]
        return value_of(record, key)

    return get


def cell(record: Record, key: str) -> str:
    """The text ``record`` shows in the column of ``key``."""
    return _cell_function(key)(record)


def _cell_function(key: str) -> Callable[[Record], str]:
    if key == "id":
        return lambda r: str(r.get("id", ""))[:8]
    if key == "tags":
        return lambda r: ",".join(r.get("tags") or [])
    if key == "epochs":

        def epochs(record: Record) -> str:
            done, total = record.get("epochs"), record.get("epochs_total")
            return f"{done}/{total}" if total is not None else format_value(done)

        return epochs
    get = _getter(key)
    return lambda r: format_value(get(r))


def differing_keys(records: Sequence[Record]) -> list[str]:
    """Config keys whose value is not the same in every record (or missing in some)."""
    records = [r for r in records if r.get("config")]  # a crashed run may have none
    if len(records) < 2:
        return []
    # Records restored from the index know where they can differ (DELTA_KEYS); others
    # (read from their folders just now) make every one of their keys a candidate.
    candidates: set[str] = set()
    for record in records:
        delta = record.get(DELTA_KEYS)
        candidates.update(record["config"] if delta is None else delta)
    first = records[0]["config"]
    missing = object()
    differ = set()
    for key in candidates:
        value = first.get(key, missing)
        for record in records:
            if record["config"].get(key, missing) != value:
                differ.add(key)
                break
    # Keys every record has (a swept hyperparameter) before those only some have.
    counts = {k: sum(k in r["config"] for r in records) for k in differ}
    return sorted(differ - _SHOWN_ELSEWHERE, key=lambda k: (-counts[k], k))


def _short_headers(keys: list[str]) -> dict[str, str]:
    """Shortest dotted suffix of each key that no other key shares."""
    headers = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(o != key and (o == suffix or o.endswith("." + suffix)) for o in keys):
                headers[key] = suffix
                break
        else:
            headers[key] = key
    return headers


def _metric_header(key: str) -> str:
    split, _, name = key.partition(".")
    return f"{split}.{_ABBREVIATIONS.get(name, name)}" if name else key


def default_columns(records: Sequence[Record]) -> list[Column]:
    """The columns of ``forge ls``: summary, best value, metrics, then differing config.

    Priorities decide what an 80-column terminal keeps: id and status, the headline
    metrics, then whatever tells the listed experiments apart; a name column that is the
    same in every row goes first when space is short.
    """
    monitors = {(r.get("best") or {}).get("metric") for r in records} - {None}
    best_header = f"best {next(iter(monitors))}" if len(monitors) == 1 else "best"
    metric_keys = sorted(
        {k for r in records for k in (r.get("metrics") or {})},
        key=lambda k: (not k.startswith("test."), k),
    )

    def name_priority(key: str) -> float:
        if len({r.get(key) for r in records}) == 1:
            return 20.0
        return 6.0 if key == "framework" else 5.0

    columns = [Column("id", "id", 0)]
    columns += [
        Column(key, header, name_priority(key))
        for key, header in (
            ("data", "data"),
            ("model", "model"),
            ("train", "train"),
            ("framework", "fw"),
        )
    ]
    columns += [
        Column("status", "status", 1),
        Column("epochs", "ep", 7),
        Column("best", best_header, 4),
    ]
    if any(r.get("tags") for r in records):
        columns.append(Column("tags", "tags", 4.8))
    columns += [
        Column(k, _metric_header(k), 2 + i if i < 2 else 25) for i, k in enumerate(metric_keys)
    ]
    differ = differing_keys(records)
    headers = _short_headers(differ)
    columns += [Column(k, headers[k], 4.5 + i / 100) for i, k in enumerate(differ)]
    return columns


def named_columns(keys: Sequence[str]) -> list[Column]:
    """Columns for ``--columns a,b,c`` in the order given (never dropped)."""
    return [Column(k, k, 0) for k in keys]


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def cells(records: Sequence[Record], columns: Sequence[Column]) -> list[list[str]]:
    """The clipped cell texts, row by row (computed once, for fitting and printing)."""
    functions = [_cell_function(c.key) for c in columns]
    return [[_clip(f(r)) for f in functions] for r in records]


def fit_columns(
    columns: list[Column], matrix: list[list[str]], width: int
) -> tuple[list[int], list[Column]]:
    """Indexes of the columns that fit in ``width`` characters (by priority), and the
    columns left out."""
    widths = [max([len(c.header)] + [len(row[i]) for row in matrix]) for i, c in enumerate(columns)]
    kept: set[int] = set()
    used = 0
    for i in sorted(range(len(columns)), key=lambda i: columns[i].priority):
        extra = widths[i] + (len(_SEP) if kept else 0)
        if used + extra <= width or (columns[i].priority == 0 and not kept):
            kept.add(i)
            used += extra
    shown = sorted(kept)
    return shown, [c for i, c in enumerate(columns) if i not in kept]


def _numeric(records: Sequence[Record], key: str) -> bool:
    if key == "epochs":
        return True
    for record in records:
        value = value_of(record, key)
        if value is not None:
            return isinstance(value, int | float) and not isinstance(value, bool)
    return False


def render_plain(
    records: Sequence[Record],
    columns: list[Column],
    matrix: list[list[str]],
    shown: list[int] | None = None,
) -> str:
    """An aligned text table of the ``shown`` columns; numbers right-aligned."""
    shown = list(range(len(columns))) if shown is None else shown
    headers = [columns[i].header for i in shown]
    rows = [[row[i] for i in shown] for row in matrix]
    widths = [max([len(h)] + [len(row[j]) for row in rows]) for j, h in enumerate(headers)]
    right = [_numeric(records, columns[i].key) for i in shown]
    formats = [f"{{:>{w}}}" if r else f"{{:<{w}}}" for w, r in zip(widths, right, strict=True)]
    template = _SEP.join(formats)
    out = [template.format(*headers).rstrip(), template.format(*("-" * w for w in widths))]
    out.extend(template.format(*row).rstrip() for row in rows)
    return "\n".join(out) + "\n"


def render_rich(
    records: Sequence[Record],
    columns: list[Column],
    matrix: list[list[str]],
    shown: list[int],
    console: Any,
) -> None:
    """Print a rich table on ``console`` (rich is imported only when a terminal asks)."""
    from rich import box
    from rich.table import Table

    status_at = next((j for j, i in enumerate(shown) if columns[i].key == "status"), None)
    styles = {"failed": "red", "incomplete": "magenta", "stale": "yellow", "running": "cyan"}
    # No edges and one pad cell: the same 2-character gap as the plain table, so the
    # columns chosen for the width fit exactly.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for i in shown:
        justify: Literal["right", "left"] = "right" if _numeric(records, columns[i].key) else "left"
        table.add_column(columns[i].header, justify=justify, overflow="ellipsis", no_wrap=True)
    for row in matrix:
        values = [row[i] for i in shown]
        style = styles.get(values[status_at]) if status_at is not None else None
        table.add_row(*values, style=style)
    console.print(table)


def render_csv(records: Sequence[Record], columns: list[Column]) -> str:
    """CSV with the full (unclipped) values; lists and dicts as compact JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for record in records:
        row = []
        for column in columns:
            value = value_of(record, column.key)
            row.append(
                ""
                if value is None
                else format_value(value)
                if not isinstance(value, float)
                else repr(value)
            )
        writer.writerow(row)
    return buffer.getvalue()


def public_record(record: Record) -> dict[str, Any]:
    """A record as ``--json`` shows it: config nested again, cache bookkeeping dropped."""
    dropped = ("sig", "volatile", "config", "evals", "eval_names", DELTA_KEYS)
    out = {k: v for k, v in record.items() if k not in dropped}
    out["config"] = unflatten(record.get("config") or {})
    return out


def render_json(records: Sequence[Record]) -> str:
    """A JSON list with one object per experiment."""
    return dumps_json([public_record(r) for r in records], indent=1) + "\n"

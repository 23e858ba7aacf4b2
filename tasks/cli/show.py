"""``forge show EXP``: everything about one experiment, read from its folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tasks.cli.cleanup import describe_size
from tasks.cli.records import Record
from tasks.cli.table import cell, format_value
from tasks.layout import CONFIG_FILE, METRICS_FILE, RUN_FILE
from tasks.metrics_log import read_metrics

__all__ = ["render_show"]

_MAX_FILES = 60


def _provenance(run: dict[str, Any]) -> list[str]:
    git = run.get("git") or {}
    flag = git.get("dirty")
    dirty = (
        " (dirty: unknown)"
        if flag is None
        else " (dirty: uncommitted changes, see git.diff)"
        if flag
        else ""
    )
    lines = [
        f"start {format_value(run.get('start'))}   end {format_value(run.get('end'))}   "
        f"duration {format_value(run.get('duration_s'))} s",
        f"host {format_value(run.get('host'))}   python {format_value(run.get('python'))}   "
        f"device {format_value(run.get('device'))}   seed {format_value(run.get('seed'))}",
        f"git {format_value(git.get('commit'))}{dirty}",
        "command " + (" ".join(map(str, run.get("command") or [])) or "-"),
        "versions "
        + (", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items()) or "-"),
    ]
    for role, info in (run.get("code") or {}).items():
        if isinstance(info, dict):
            lines.append(f"code {role}: {info.get('qualname')} ({info.get('fingerprint')})")
    if run.get("resumed_from_epoch"):
        lines.append(f"resumed from epoch {run['resumed_from_epoch']}")
    if run.get("error"):
        lines.append(f"error {run['error']}")
    return lines


def _files(directory: Path) -> list[str]:
    found = []
    for base, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(base) / name
            try:
                size = path.stat().st_size
            except OSError:
                continue
            found.append(f"{describe_size(size):>10}  {path.relative_to(directory)}")
    if len(found) > _MAX_FILES:
        found = found[:_MAX_FILES] + [f"… and {len(found) - _MAX_FILES} more"]
    return found


def render_show(root: Path, record: Record) -> str:
    """The text ``forge show`` prints for ``record`` under results directory ``root``."""
    directory = root / record["path"]
    try:
        run = json.loads((directory / RUN_FILE).read_text())
    except (OSError, ValueError):
        run = {}
    try:
        config_text = (directory / CONFIG_FILE).read_text(encoding="utf-8")
    except OSError:
        config_text = "(missing: the run stopped before writing it)\n"
    out = [
        f"experiment {record['id']}  {cell(record, 'status')}",
        f"folder     {directory}",
        f"data {record['data']}   model {record['model']}   train {record['train']}   "
        f"framework {format_value(record.get('framework'))}",
    ]
    out += [f"why stale  {reason}" for reason in record.get("stale_reasons") or []]
    out += ["", "config (resolved):"]
    out += [f"  {line}" for line in config_text.rstrip("\n").splitlines()]
    out += ["", "provenance:"] + [f"  {line}" for line in _provenance(run)]
    rows = read_metrics(directory / METRICS_FILE)
    out += ["", f"metrics ({len(rows)} epoch(s) logged):"]
    if rows:
        last = ", ".join(f"{k}={format_value(v)}" for k, v in rows[-1].items() if k != "epoch")
        out.append(f"  last epoch {int(rows[-1].get('epoch', len(rows)))}: {last}")
    best = record.get("best") or {}
    if best.get("value") is not None:
        out.append(
            f"  best {best.get('metric')}={format_value(best['value'])} "
            f"at epoch {best.get('epoch')}"
        )
    out += ["", "evaluations:"]
    for ev in record.get("evals") or []:
        metrics = ", ".join(f"{k}={format_value(v)}" for k, v in ev["metrics"].items())
        out.append(
            f"  {ev['name']}  {ev['status']}  split {ev['split']}, checkpoint "
            f"{ev['checkpoint']}: {metrics or '-'}"
        )
    if not record.get("evals"):
        out.append("  (none)")
    out += ["", "files:"] + [f"  {line}" for line in _files(directory)]
    return "\n".join(out) + "\n"

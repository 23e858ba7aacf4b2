"""``forge show EXP``: everything about one experiment, read from its folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tasks.cli.cleanup import describe_size
from tasks.cli.table import cell, format_value
from tasks.store.metrics_log import read_metrics
from tasks.store.names import CONFIG_FILE, METRICS_FILE
from tasks.store.records import RunRecord
from tasks.store.summary import Record, stored_text

__all__ = ["command_line", "environment_lines", "render_show"]

_MAX_FILES = 60


def command_line(run: RunRecord) -> str:
    command = run.raw.get("command")
    if isinstance(command, list):
        return " ".join(map(str, command)) or "-"
    return format_value(command)


def environment_lines(run: RunRecord) -> list[str]:
    """run.json's ``environment`` in words (nothing for runs from before it was recorded)."""
    env = run.environment
    if not env:
        return []
    python_raw, gpus_raw = env.get("python"), env.get("gpus")
    python: dict[str, Any] = python_raw if isinstance(python_raw, dict) else {}
    gpus: list[Any] = gpus_raw if isinstance(gpus_raw, list) else []
    return [
        f"environment python {format_value(python.get('version'))} "
        f"({format_value(python.get('executable'))}), {format_value(env.get('packages'))} "
        f"packages in {format_value(env.get('packages_file'))}",
        f"accelerators cuda {format_value(env.get('cuda'))}   cudnn "
        f"{format_value(env.get('cudnn'))}   gpus {', '.join(map(str, gpus)) or '-'}",
    ]


def _provenance(run: RunRecord) -> list[str]:
    git = run.git
    flag = git.get("dirty")
    dirty = (
        " (dirty: unknown)"
        if flag is None
        else " (dirty: uncommitted changes, see git.diff)"
        if flag
        else ""
    )
    lines = [
        f"start {format_value(run.start)}   end {format_value(run.end)}   "
        f"duration {format_value(run.duration_s)} s",
        f"host {format_value(run.host)}   python {format_value(run.raw.get('python'))}   "
        f"device {format_value(run.device)}   seed {format_value(run.seed)}",
        f"git {format_value(git.get('commit'))}{dirty}",
        f"command {command_line(run)}",
        "versions " + (", ".join(f"{k} {v}" for k, v in run.versions.items()) or "-"),
    ]
    lines += environment_lines(run)
    for role, info in run.code.items():
        lines.append(f"code {role}: {info.get('qualname')} ({info.get('fingerprint')})")
    if run.raw.get("resumed_from_epoch"):
        lines.append(f"resumed from epoch {format_value(run.raw['resumed_from_epoch'])}")
    if run.error:
        lines.append(f"error {run.error}")
    if run.damage and not run.missing:
        lines.append(f"damaged {run.damage}")
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
    run = RunRecord.read(directory)
    config_text = stored_text(directory / CONFIG_FILE)
    out = [
        f"experiment {record['id']}  {cell(record, 'status')}",
        f"folder     {directory}",
        f"data {record['data']}   model {record['model']}   train {record['train']}   "
        f"framework {format_value(record.get('framework'))}",
    ]
    out.append(f"tags       {', '.join(record.get('tags') or []) or '-'}")
    note_lines = (record.get("note") or "").splitlines()
    out += [f"{'note' if i == 0 else '':<10} {line}" for i, line in enumerate(note_lines)]
    out += [f"why stale  {reason}" for reason in record.get("stale_reasons") or []]
    if record.get("damage"):
        out.append(f"damaged    {record['damage']}")
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

"""``forge diff A B``: a nested diff of two resolved configs, and their metrics side by side."""

from __future__ import annotations

from typing import Any

from tasks.cli.table import cell, format_value
from tasks.store.summary import Record

__all__ = ["ABSENT", "config_diff", "package_diff", "render_diff", "render_packages"]

ABSENT = "(absent)"


def config_diff(a: Any, b: Any) -> dict[str, Any]:
    """The keys where ``a`` and ``b`` differ, nested like the configs themselves.

    Returns:
        ``{key: {"a": value, "b": value}}`` for changed leaves (``ABSENT`` for a key only
        one side has) and ``{key: {...}}`` for sections with changes inside.
    """
    out: dict[str, Any] = {}
    a = a if isinstance(a, dict) else {}
    b = b if isinstance(b, dict) else {}
    for key in list(a) + [k for k in b if k not in a]:
        left, right = a.get(key, ABSENT), b.get(key, ABSENT)
        if isinstance(left, dict) and isinstance(right, dict):
            inner = config_diff(left, right)
            if inner:
                out[key] = inner
        elif left != right:
            out[key] = {"a": left, "b": right}
    return out


def package_diff(a: dict[str, str], b: dict[str, str]) -> dict[str, Any]:
    """Installed packages of B against A: ``added`` and ``removed`` ({name: version}) and
    ``changed`` ({name: {"a": version, "b": version}}); names compared as pip does
    (case, ``-``, ``_`` and ``.`` alike)."""

    def key(name: str) -> str:
        return name.lower().replace("_", "-").replace(".", "-")

    by_a = {key(n): (n, v) for n, v in a.items()}
    by_b = {key(n): (n, v) for n, v in b.items()}
    return {
        "added": {by_b[k][0]: by_b[k][1] for k in sorted(by_b.keys() - by_a.keys())},
        "removed": {by_a[k][0]: by_a[k][1] for k in sorted(by_a.keys() - by_b.keys())},
        "changed": {
            by_a[k][0]: {"a": by_a[k][1], "b": by_b[k][1]}
            for k in sorted(by_a.keys() & by_b.keys())
            if by_a[k][1] != by_b[k][1]
        },
    }


def render_packages(diff: dict[str, Any] | None, why: str | None = None) -> list[str]:
    """The ``packages`` part of ``forge diff``: one line per added, removed or changed one."""
    if diff is None:
        return [f"packages: not compared ({why})"]
    lines = [f"  + {n}=={v}" for n, v in diff["added"].items()]
    lines += [f"  - {n}=={v}" for n, v in diff["removed"].items()]
    lines += [f"  ~ {n}: {c['a']} → {c['b']}" for n, c in diff["changed"].items()]
    if not lines:
        return ["packages: identical"]
    counts = ", ".join(f"{len(diff[k])} {k}" for k in ("added", "removed", "changed"))
    return [f"packages (A → B: {counts}):", *lines]


def _is_leaf(node: Any) -> bool:
    return isinstance(node, dict) and set(node) == {"a", "b"}


def _lines(diff: dict[str, Any], indent: int) -> list[str]:
    lines = []
    pad = "  " * indent
    for key, node in diff.items():
        if _is_leaf(node):
            left = node["a"] if node["a"] == ABSENT else format_value(node["a"])
            right = node["b"] if node["b"] == ABSENT else format_value(node["b"])
            lines.append(f"{pad}{key}: {left} → {right}")
        else:
            lines.append(f"{pad}{key}:")
            lines.extend(_lines(node, indent + 1))
    return lines


def _metric_rows(a: Record, b: Record) -> list[tuple[str, str, str]]:
    best_a, best_b = a.get("best") or {}, b.get("best") or {}
    monitor = best_a.get("metric") or best_b.get("metric") or "value"
    rows = [
        ("status", cell(a, "status"), cell(b, "status")),
        ("epochs", cell(a, "epochs"), cell(b, "epochs")),
        (f"best {monitor}", cell(a, "best"), cell(b, "best")),
        ("duration_s", cell(a, "run.duration_s"), cell(b, "run.duration_s")),
    ]
    keys = list(a.get("metrics") or {})
    keys += [k for k in b.get("metrics") or {} if k not in keys]
    rows += [(k, cell(a, k), cell(b, k)) for k in keys]
    return rows


def render_diff(
    a: Record, b: Record, config_a: Any, config_b: Any, packages: list[str] | None = None
) -> str:
    """The text ``forge diff`` prints (``packages``: :func:`render_packages`' lines)."""
    out = [f"A  {a['id'][:8]}  {a['path']}", f"B  {b['id'][:8]}  {b['path']}", ""]
    diff = config_diff(config_a, config_b)
    if diff:
        out.append("config (A → B):")
        out.extend(_lines(diff, 1))
    else:
        out.append("config: identical")
    out.append("")
    if packages:
        out += [*packages, ""]
    rows = _metric_rows(a, b)
    width = max(len(r[0]) for r in rows) + 2
    col = max(8, *(len(r[1]) for r in rows)) + 2
    out.append("metrics".ljust(width + 2) + "A".ljust(col) + "B")
    out.extend(f"  {name.ljust(width)}{va.ljust(col)}{vb}" for name, va, vb in rows)
    return "\n".join(out) + "\n"

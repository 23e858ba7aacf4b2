"""Command line: ``python -m benchmarks [--quick] [--json out.json] [--only NAME ...]``."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import REGISTRY
from benchmarks.harness import format_table, not_available
from benchmarks.machine import describe


def _run_one(name: str, module_name: str, quick: bool) -> list[dict[str, Any]]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        return [not_available(name, f"{module_name} cannot be imported: {err}")]
    run = getattr(module, "run", None)
    if run is None:
        return [not_available(name, f"{module_name} has no run(quick) function")]
    try:
        rows: list[dict[str, Any]] = run(quick)
    except ImportError as err:
        return [not_available(name, f"needs a module that is not installed: {err}")]
    except Exception as err:  # one broken benchmark must not hide the others' results
        traceback.print_exc()
        return [not_available(name, f"{type(err).__name__}: {err}", status="error")]
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks, print the table, optionally write JSON.

    Returns:
        0, or 1 when a benchmark raised an unexpected error (missed targets do not fail).
    """
    names = [name for name, _, _ in REGISTRY]
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats (CI)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=names,
        metavar="NAME",
        help=f"run only these benchmarks: {', '.join(names)}",
    )
    args = parser.parse_args(argv)
    selected = [entry for entry in REGISTRY if not args.only or entry[0] in args.only]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name, module_name, what in selected:
        print(f"[{name}] {what} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        new = _run_one(name, module_name, args.quick)
        for r in new:
            r.setdefault("benchmark", name)
        rows.extend(new)
        print(f"[{name}] done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    print()
    print(format_table(rows))
    print(f"\n{len(selected)} benchmarks in {total:.1f} s ({'quick' if args.quick else 'full'})")
    if args.json:
        report = {
            "quick": args.quick,
            "seconds": round(total, 2),
            "python": platform.python_version(),
            "machine": describe(),
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(r["status"] == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Forge's benchmark suite: framework overhead, caching and scale, as ratios against peers.

Run it with ``python -m benchmarks [--quick] [--json out.json] [--only NAME ...]``. Each
benchmark is a module exposing ``run(quick: bool) -> list[dict]`` (rows built with
:mod:`benchmarks.harness`). :data:`REGISTRY` lists them in the order they run; a module
that is missing or fails to import is reported as "not available" instead of failing.
"""

from __future__ import annotations

__all__ = ["REGISTRY"]

# (name for --only, module, what it compares). Modules written elsewhere may be absent.
REGISTRY: list[tuple[str, str, str]] = [
    ("train_torch", "benchmarks.train_torch", "torch train loop vs hand-written loop"),
    ("train_tf", "benchmarks.train_tf", "TensorFlow train loop vs bare model.fit"),
    ("train_step", "benchmarks.train_step", "whole Train step per epoch vs loops that save"),
    ("streaming", "benchmarks.streaming", "BatchStream vs in-memory numpy; peak memory"),
    ("noop_rerun", "benchmarks.noop_rerun", "no-op luigi rerun vs import luigi"),
    ("sweep_scaling", "benchmarks.sweep_scaling", "cold sweep of N experiments vs plain Luigi"),
    ("sweep_loop", "benchmarks.sweep_loop", "sweep of 40 small experiments vs a hand loop"),
    ("noop_status", "benchmarks.noop_status", "no-op status of N experiments vs plain Luigi"),
    ("forge_ls", "benchmarks.forge_ls", "forge ls over 10,000 directories"),
    ("load_trained", "benchmarks.load_trained", "LoadTrained vs build + load weights by hand"),
]

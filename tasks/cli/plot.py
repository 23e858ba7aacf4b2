"""Learning-curve figures from ``metrics.csv`` (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.cli.table import format_value
from tasks.errors import ConfigError
from tasks.store.metrics_log import read_metrics
from tasks.store.names import METRICS_FILE

__all__ = [
    "plot_against",
    "plot_confusion",
    "plot_learning_curves",
    "plot_metric",
    "plot_search_history",
]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metric(
    curves: Sequence[tuple[str, Path]], metric: str, output: Path, *, title: str = ""
) -> list[str]:
    """Plot ``metric`` per epoch for several experiments on one figure.

    Args:
        curves: ``(label, experiment folder)`` pairs.
        metric: a column of ``metrics.csv`` (``val_loss``, ``accuracy``, ...).
        output: the image to write (format from its suffix, e.g. ``.png``, ``.svg``).

    Returns:
        The labels of the experiments that had no such metric (left out of the figure).

    Raises:
        ConfigError: no experiment logged ``metric``; the message lists what they did log.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    missing: list[str] = []
    logged: set[str] = set()
    for label, directory in curves:
        rows = read_metrics(directory / METRICS_FILE)
        points = [(r["epoch"], r[metric]) for r in rows if metric in r and "epoch" in r]
        logged.update(k for r in rows for k in r if k != "epoch")
        if not points:
            missing.append(label)
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    if len(missing) == len(curves):
        plt.close(fig)
        raise ConfigError(
            f"--metric {metric!r}: none of the experiments logged it; "
            f"logged metrics: {', '.join(sorted(logged)) or '(none yet)'}"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return missing


def plot_confusion(matrix: list[list[int]], output: Path) -> None:
    """Draw a confusion matrix (rows: true class, columns: predicted) with its counts."""
    import numpy as np

    plt = _pyplot()
    counts = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(counts, cmap="Blues")
    for (i, j), count in np.ndenumerate(counts):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)


def plot_search_history(summary: dict[str, Any], output: Path) -> int:
    """A search's optimisation history: each trial's value, and the best so far.

    Args:
        summary: a search's ``summary.json`` (``metric``, ``direction``, ``trials_table``).
        output: the image to write.

    Returns:
        How many trials with a value were drawn.
    """
    plt = _pyplot()
    maximize = summary.get("direction") == "maximize"
    rows = sorted(summary["trials_table"], key=lambda r: r.get("trial", 0))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    best: float | None = None
    best_xs: list[int] = []
    best_ys: list[float] = []
    drawn = 0
    for state, marker in (("complete", "o"), ("pruned", "x")):
        points = [
            (r["trial"], r["value"])
            for r in rows
            if r.get("state") == state and isinstance(r.get("value"), int | float)
        ]
        drawn += len(points)
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, marker=marker, label=f"{state} ({len(points)})", alpha=0.8)
    for r in rows:
        value = r.get("value")
        if r.get("state") != "complete" or not isinstance(value, int | float):
            continue
        if best is None or (value > best if maximize else value < best):
            best = float(value)
        best_xs.append(r["trial"])
        best_ys.append(best)
    if best_xs:
        best_xs.append(max(r.get("trial", 0) for r in rows))  # the line runs to the last trial
        best_ys.append(best_ys[-1])
        ax.step(best_xs, best_ys, where="post", color="black", linewidth=1, label="best so far")
    metric = summary.get("metric", "value")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} ({summary.get('direction', '')})")
    ax.set_title(f"optimisation history: {summary.get('sweep', '')}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return drawn


def plot_learning_curves(directory: Path, output: Path) -> bool:
    """One experiment's curves: losses on the left, every other metric on the right.

    Returns:
        False (and writes nothing) when the experiment has not logged an epoch yet.
    """
    rows = read_metrics(directory / METRICS_FILE)
    if not rows:
        return False
    plt = _pyplot()
    names = [k for k in rows[0] if k != "epoch"]
    groups = [[n for n in names if "loss" in n], [n for n in names if "loss" not in n]]
    groups = [g for g in groups if g]
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    for ax, group in zip(axes[0], groups, strict=True):
        for name in group:
            ax.plot(epochs, [r.get(name) for r in rows], marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=90)
    plt.close(fig)
    return True


def plot_against(
    points: Sequence[tuple[Any, float, str]], key: str, metric: str, output: Path
) -> None:
    """A scatter of ``metric`` against one hyperparameter, one point per experiment.

    Args:
        points: ``(hyperparameter value, metric value, label)`` triples.
        key: the dotted config key (the x axis).
        metric: what the y axis shows.
        output: the image to write.

    Numbers are placed on a numeric axis (logarithmic when they span more than two
    decades, as learning rates do); anything else (names, lists) as categories.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    numeric = all(
        isinstance(x, int | float) and not isinstance(x, bool) for x, _y, _label in points
    )
    if numeric:
        xs = [float(x) for x, _y, _label in points]
        if min(xs) > 0 and max(xs) / min(xs) > 100:
            ax.set_xscale("log")
    else:
        names = sorted({format_value(x) for x, _y, _label in points})
        xs = [float(names.index(format_value(x))) for x, _y, _label in points]
        ax.set_xticks(range(len(names)), [n[:18] for n in names], rotation=20, fontsize=8)
        ax.set_xlim(-0.5, len(names) - 0.5)
    ax.scatter(xs, [y for _x, y, _label in points], s=28, alpha=0.8)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=90)
    plt.close(fig)

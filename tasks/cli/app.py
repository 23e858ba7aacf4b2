"""The ``forge`` command line (typer): ls, show, diff, status, plot, report, rm, gc, tag,
untag, note.

Each command is a thin shell over one module of :mod:`tasks.cli`; a :class:`ForgeError`
becomes one ``forge: error: …`` line on stderr and exit status 1.
"""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tasks.errors import ConfigError, ForgeError
from tasks.store.annotations import check_tags
from tasks.store.catalog import (
    Catalog,
    default_results_dir,
    find_experiment,
    load_catalog,
    locate,
)
from tasks.store.names import CONFIG_FILE, ENVIRONMENT_FILE
from tasks.store.records import MISSING, json_text
from tasks.store.summary import Record, read_config

__all__ = ["app", "main"]

app = typer.Typer(
    name="forge",
    help="Browse, compare, check and clean Forge experiments.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
F = TypeVar("F", bound=Callable[..., Any])

ResultsArg = Annotated[
    Path | None,
    typer.Argument(
        help="Results directory (default: [forge] results_dir, else results).", show_default=False
    ),
]
ResultsOpt = Annotated[
    Path | None,
    typer.Option(
        "--results-dir",
        "-r",
        help="Results directory (default: [forge] results_dir).",
        show_default=False,
    ),
]
ExpArg = Annotated[str, typer.Argument(help="Experiment folder, or a unique prefix of its id.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")]


def _friendly(func: F) -> F:
    """Print Forge's own errors as one line and exit 1, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ForgeError as err:
            typer.echo(f"forge: error: {err}", err=True)
            raise typer.Exit(1) from err

    return wrapper  # type: ignore[return-value]


def _find(ref: str, results_dir: Path | None) -> tuple[Catalog, Record]:
    """The catalog and record of the experiment ``ref`` names (see ``find_experiment``)."""
    return locate(find_experiment(ref, results_dir))


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


@app.command("ls")
@_friendly
def ls(
    results_dir: ResultsArg = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where", "-w", help="Filter: KEY OP VALUE, OP in == != >= <= > < = (repeatable)."
        ),
    ] = None,
    sort: Annotated[
        list[str] | None,
        typer.Option("--sort", "-s", help="Sort keys, comma-separated; -key sorts descending."),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns", "-c", help="Comma-separated keys to show instead of the default columns."
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", help="Only experiments with this tag (repeatable: all)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object each).")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Rebuild the index from the folders.")
    ] = False,
    width: Annotated[
        int | None, typer.Option(help="Table width (default: the terminal's).")
    ] = None,
) -> None:
    """List experiments: status, epochs, best value, metrics and the config that differs."""
    from tasks.cli import query, table

    catalog = load_catalog(results_dir or default_results_dir(), rebuild=rebuild)
    records = catalog.records
    conditions = [query.parse_where(text, records) for text in where or []]
    conditions += [query.tag_condition(t) for t in check_tags(_split(tag), "--tag")]
    records = [r for r in records if all(c.matches(r) for c in conditions)]
    records = query.sort_records(records, _split(sort))
    if as_json:
        typer.echo(table.render_json(records), nl=False)
        return
    if columns:
        keys = _split([columns])
        known = set(query.known_keys(catalog.records))
        unknown = [k for k in keys if k not in known]
        if unknown and catalog.records:
            raise ConfigError(
                f"--columns: unknown key(s) {', '.join(unknown)}; see `forge ls --json` for keys"
            )
        cols = table.named_columns(keys)
    else:
        cols = table.default_columns(records)
    if as_csv:
        typer.echo(table.render_csv(records, cols), nl=False)
        return
    if not records:
        typer.echo(f"no experiments in {catalog.root}" + (" match" if conditions else ""))
        return
    tty = sys.stdout.isatty()
    total = width or (shutil.get_terminal_size((80, 24)).columns if tty else 80)
    matrix = table.cells(records, cols)
    hidden: list[table.Column] = []
    if columns:
        shown = list(range(len(cols)))
    else:
        shown, hidden = table.fit_columns(cols, matrix, total)
    if tty:
        from rich.console import Console

        table.render_rich(records, cols, matrix, shown, Console(width=total))
    else:
        typer.echo(table.render_plain(records, cols, matrix, shown), nl=False)
    typer.echo(_footer(len(records), [c.key for c in hidden], total))


def _footer(count: int, hidden: list[str], width: int) -> str:
    """``N experiment(s)`` and, within ``width``, which columns did not fit."""
    note = f"{count} experiment(s)"
    if not hidden:
        return note
    note += f"; {len(hidden)} column(s) hidden for width:"
    tail = " (see --columns, --width)"
    names: list[str] = []
    for key in hidden:
        if len(note) + len(" ".join([*names, key])) + len(tail) + 3 > width:
            names.append("…")
            break
        names.append(key)
    return f"{note} {' '.join(names)}{tail}"


@app.command()
@_friendly
def show(experiment: ExpArg, results_dir: ResultsOpt = None) -> None:
    """Show one experiment: config, provenance, metrics, evaluations and files."""
    from tasks.cli.show import render_show
    from tasks.store.catalog import fresh_record

    catalog, record = _find(experiment, results_dir)
    typer.echo(render_show(catalog.root, fresh_record(catalog.root, record)), nl=False)


@app.command()
@_friendly
def diff(
    experiment_a: ExpArg,
    experiment_b: ExpArg,
    results_dir: ResultsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diff as JSON.")] = False,
) -> None:
    """Compare two experiments: config differences, installed packages, metrics."""
    from tasks.cli.diff import config_diff, package_diff, render_diff, render_packages
    from tasks.store.packages import read_packages

    cat_a, a = _find(experiment_a, results_dir)
    cat_b, b = _find(experiment_b, results_dir)
    config_a = read_config(cat_a.root / a["path"] / CONFIG_FILE)
    config_b = read_config(cat_b.root / b["path"] / CONFIG_FILE)
    packages_a, why_a = read_packages(cat_a.root / a["path"])
    packages_b, why_b = read_packages(cat_b.root / b["path"])
    problems = [
        f"{side} has no {ENVIRONMENT_FILE}" if why == MISSING else f"{side}: {why}"
        for side, why in (("A", why_a), ("B", why_b))
        if why
    ]
    why = "; ".join(problems) or None
    packages = None if why else package_diff(packages_a, packages_b)
    if as_json:
        payload = {
            "a": a["path"],
            "b": b["path"],
            "config": config_diff(config_a, config_b),
            "packages": packages if why is None else {"not_compared": why},
            "metrics": {"a": a.get("metrics"), "b": b.get("metrics")},
        }
        typer.echo(json_text(payload, indent=1), nl=False)
        return
    lines = render_packages(packages, why)
    typer.echo(render_diff(a, b, config_a, config_b, lines), nl=False)


@app.command()
@_friendly
def status(
    experiment: Annotated[
        str | None,
        typer.Argument(help="An experiment (folder or id prefix) instead of config options."),
    ] = None,
    data_config: Annotated[str | None, typer.Option(help="Data config YAML.")] = None,
    model_config: Annotated[str | None, typer.Option(help="Model config YAML.")] = None,
    train_config: Annotated[str | None, typer.Option(help="Train config YAML.")] = None,
    eval_config: Annotated[str | None, typer.Option(help="Eval config YAML.")] = None,
    overrides: Annotated[str, typer.Option(help='e.g. "train.epochs=3".')] = "",
    results_dir: ResultsOpt = None,
) -> None:
    """Which steps are done, which would run, and why (config or code changed)."""
    from tasks.cli import status as st

    if experiment is not None:
        catalog, record = _find(experiment, results_dir)
        directory = catalog.root / record["path"]
        steps, notes = st.steps_for_experiment(directory)
        typer.echo(f"experiment {record['id'][:8]}  {record['path']}")
        typer.echo(st.render_steps(steps, catalog.root), nl=False)
        for note in notes:
            typer.echo(f"  {note}")
        return
    if not data_config or not model_config:
        raise ConfigError(
            "forge status needs an experiment, or --data-config and --model-config "
            "(plus --train-config/--eval-config/--overrides as given to the Luigi tasks)"
        )
    root = results_dir or default_results_dir()
    paths = {"data": data_config, "model": model_config, "train": train_config, "eval": eval_config}
    steps = st.steps_for_configs(paths, overrides, root)
    typer.echo(f"results {root}")
    typer.echo(st.render_steps(steps, root), nl=False)


@app.command()
@_friendly
def plot(
    experiments: Annotated[
        list[str] | None, typer.Argument(help="Experiments (folders or id prefixes).")
    ] = None,
    metric: Annotated[str, typer.Option("--metric", "-m", help="metrics.csv column.")] = "val_loss",
    output: Annotated[Path, typer.Option("--output", "-o", help="Image file to write.")] = Path(
        "curves.png"
    ),
    search: Annotated[
        Path | None,
        typer.Option("--search", help="A search's folder (results/sweeps/<name>-<hash>)."),
    ] = None,
    results_dir: ResultsOpt = None,
) -> None:
    """Plot one metric's learning curves of several experiments on one figure, or with
    --search a search's optimisation history (each trial's value and the best so far)."""
    from tasks.cli.plot import plot_metric, plot_search_history
    from tasks.cli.table import differing_keys, format_value

    if search is not None:
        from tasks.sweep_summary import read_search_summary

        drawn = plot_search_history(read_search_summary(search), output)
        typer.echo(f"wrote {output} ({drawn} trials)")
        return
    if not experiments:
        raise typer.BadParameter("name experiments to plot, or --search <search folder>")

    found = [_find(ref, results_dir) for ref in experiments]
    records = [record for _catalog, record in found]
    differ = differing_keys(records)[:3]
    curves = []
    for catalog, record in found:
        extra = " ".join(
            f"{k.rsplit('.', 1)[-1]}={format_value(record['config'].get(k))}" for k in differ
        )
        curves.append((f"{record['id'][:8]} {extra}".strip(), catalog.root / record["path"]))
    missing = plot_metric(curves, metric, output)
    for label in missing:
        typer.echo(f"forge: warning: {label} has no {metric!r}; left out", err=True)
    typer.echo(f"wrote {output}")


@app.command()
@_friendly
def report(
    results_dir: ResultsArg = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the site.")] = Path(
        "report"
    ),
) -> None:
    """Write a static HTML report: an index table and one page per experiment."""
    from tasks.cli.report import write_report

    catalog = load_catalog(results_dir or default_results_dir())
    index = write_report(catalog, output)
    typer.echo(f"wrote {index} ({len(catalog.records)} experiments)")


TagsArg = Annotated[list[str], typer.Argument(help="Tags (letters, digits, _ . : + / -).")]


def _retag(
    experiment: str,
    results_dir: Path | None,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> None:
    """Add or remove tags and print the experiment's tags after."""
    from tasks.store.annotations import annotate

    directory = find_experiment(experiment, results_dir)
    record = annotate(directory, add=add, remove=remove)
    typer.echo(f"{directory.name}: tags {', '.join(record.tags) or '(none)'}")


@app.command()
@_friendly
def tag(experiment: ExpArg, tags: TagsArg, results_dir: ResultsOpt = None) -> None:
    """Tag an experiment (tags never change its identity or rerun a step)."""
    _retag(experiment, results_dir, add=tags)


@app.command()
@_friendly
def untag(experiment: ExpArg, tags: TagsArg, results_dir: ResultsOpt = None) -> None:
    """Remove tags from an experiment (tags it does not have are ignored)."""
    _retag(experiment, results_dir, remove=tags)


@app.command()
@_friendly
def note(
    experiment: ExpArg,
    text: Annotated[str, typer.Argument(help='The note ("" removes it).')],
    results_dir: ResultsOpt = None,
) -> None:
    """Attach a free-text note to an experiment (replaces the previous one)."""
    from tasks.store.annotations import annotate

    directory = find_experiment(experiment, results_dir)
    annotate(directory, note=text)
    typer.echo(f"{directory.name}: note {'set' if text else 'removed'}")


def _confirm_and_delete(items: list[Any], root: Path, yes: bool, what: str) -> None:
    from tasks.cli.cleanup import delete, describe

    if not items:
        typer.echo(f"nothing to delete: no {what}")
        return
    typer.echo(f"would delete ({what}):")
    typer.echo(describe(items, root), nl=False)
    if not yes and not typer.confirm("delete these?", default=False):
        typer.echo("nothing deleted")
        raise typer.Exit(1)
    skipped = delete(items)
    for item in skipped:
        typer.echo(f"skipped {item.path}: a run started or finished it meanwhile", err=True)
    typer.echo(f"deleted {len(items) - len(skipped)} item(s)")
    if skipped:
        raise typer.Exit(1)


@app.command()
@_friendly
def rm(experiment: ExpArg, results_dir: ResultsOpt = None, yes: YesOpt = False) -> None:
    """Delete one experiment folder (its evaluations too; shared data/model steps stay)."""
    from tasks.cli.cleanup import plan_rm

    catalog, record = _find(experiment, results_dir)
    _confirm_and_delete(plan_rm(catalog.root, record), catalog.root, yes, "the experiment")
    load_catalog(catalog.root)  # refresh the index now rather than on the next ls


@app.command()
@_friendly
def gc(results_dir: ResultsArg = None, yes: YesOpt = False) -> None:
    """Delete partial leftovers of crashed runs (temporaries, incomplete steps)."""
    from tasks.cli.cleanup import plan_gc

    root = results_dir or default_results_dir()
    _confirm_and_delete(plan_gc(root), root, yes, "leftovers of crashed runs")
    load_catalog(root)


def main() -> None:
    """Console-script entry point (``forge = "tasks.cli.app:main"``)."""
    from tasks.entry import setup_forge_command

    setup_forge_command()
    app()


if __name__ == "__main__":
    main()

"""``forge report``: a static HTML site (index table + one page per experiment).

Plain files that open from disk in any browser: no server, no JavaScript, no external
assets. Every value is HTML-escaped; images are PNGs beside the pages.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from html import escape
from pathlib import Path

from tasks.cli.plot import plot_confusion, plot_learning_curves
from tasks.cli.show import command_line
from tasks.cli.table import cell, default_columns, format_value
from tasks.store.catalog import Catalog, fresh_record
from tasks.store.names import CONFIG_FILE, CONFUSION_PNG, EVAL_DIR
from tasks.store.records import RunRecord, read_confusion
from tasks.store.summary import Record, stored_text

__all__ = ["write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; }
.done { color: #1a7f37; } .failed { color: #cf222e; } .stale { color: #9a6700; }
.running { color: #0969da; } .incomplete { color: #8250df; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], html_cells: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f"<td>{c if html_cells else escape(c)}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "</tbody></table>"


def _index(catalog: Catalog) -> str:
    records = catalog.records
    columns = default_columns(records)
    rows = []
    for record in records:
        tds = []
        for column in columns:
            text = escape(cell(record, column.key))
            if column.key == "id":
                text = f'<a href="experiments/{escape(record["id"])}.html">{text}</a>'
            elif column.key == "status":
                text = f'<span class="{text}">{text}</span>'
            numeric = (
                column.key in ("best", "epochs")
                or "." in column.key
                and column.key in (record.get("metrics") or {})
            )
            tds.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        rows.append(f'<tr class="experiment">{"".join(tds)}</tr>')
    # Full dotted keys here: a page has the width a terminal lacks.
    head = "".join(f"<th>{escape(c.key if '.' in c.key else c.header)}</th>" for c in columns)
    table = (
        f'<table id="experiments"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(rows)
        + "</tbody></table>"
    )
    body = (
        f"<h1>Forge experiments</h1>\n<p>{len(records)} experiments in "
        f"<code>{escape(catalog.root.name or str(catalog.root))}</code>.</p>\n{table}"
    )
    return _page("Forge experiments", body)


def _provenance(run: RunRecord, record: Record) -> list[tuple[str, str]]:
    git = run.git
    items = [
        ("status", cell(record, "status")),
        ("start", format_value(run.start)),
        ("end", format_value(run.end)),
        ("duration_s", format_value(run.duration_s)),
        ("host", format_value(run.host)),
        ("platform", format_value(run.raw.get("platform"))),
        ("python", format_value(run.raw.get("python"))),
        ("device", format_value(run.device)),
        ("seed", format_value(run.seed)),
        ("git commit", format_value(git.get("commit"))),
        ("git dirty", format_value(git.get("dirty"))),
        ("command", command_line(run)),
    ]
    items += [(f"version {k}", str(v)) for k, v in run.versions.items()]
    for role, info in run.code.items():
        items.append((f"code {role}", f"{info.get('qualname')} ({info.get('fingerprint')})"))
    items += [("stale because", r) for r in record.get("stale_reasons") or []]
    if record.get("damage"):
        items.append(("damaged", str(record["damage"])))
    if run.error:
        items.append(("error", run.error))
    return items


def _experiment_page(root: Path, record: Record, out: Path) -> str:
    directory = root / record["path"]
    assets = out / "experiments" / record["id"]
    assets.mkdir(parents=True, exist_ok=True)
    config_text = stored_text(directory / CONFIG_FILE)
    run = RunRecord.read(directory)
    parts = [
        '<p><a href="../index.html">← all experiments</a></p>',
        f"<h1>Experiment {escape(record['id'][:8])}</h1>",
        f"<p><code>{escape(record['path'])}</code> — "
        f'<span class="{escape(cell(record, "status"))}">{escape(cell(record, "status"))}</span>'
        "</p>",
        "<h2>Configuration</h2>",
        f"<pre>{escape(config_text)}</pre>",
        "<h2>Provenance</h2>",
        _table(["field", "value"], _provenance(run, record)),
        "<h2>Learning curves</h2>",
    ]
    if plot_learning_curves(directory, assets / "curves.png"):
        parts.append(f'<img alt="learning curves" src="{escape(record["id"])}/curves.png">')
    else:
        parts.append("<p>No epoch logged yet.</p>")
    parts.append("<h2>Evaluations</h2>")
    if not record.get("evals"):
        parts.append("<p>No evaluation yet.</p>")
    for ev in record.get("evals") or []:
        metrics = ", ".join(f"{k}={format_value(v)}" for k, v in ev["metrics"].items())
        parts.append(
            f"<h3>{escape(ev['name'])}</h3><p>{escape(str(ev['status']))}: split "
            f"{escape(str(ev['split']))}, checkpoint {escape(str(ev['checkpoint']))}; "
            f"{escape(metrics or 'no metrics')}</p>"
        )
        eval_dir = directory / EVAL_DIR / ev["name"]
        target = assets / f"confusion-{ev['name']}.png"
        if _confusion_figure(eval_dir, target):
            parts.append(
                f'<img alt="confusion matrix {escape(ev["name"])}" '
                f'src="{escape(record["id"])}/{escape(target.name)}">'
            )
    return _page(f"Experiment {record['id'][:8]}", "\n".join(parts))


def _confusion_figure(eval_dir: Path, target: Path) -> bool:
    """Draw an evaluation's confusion matrix into ``target`` (from the stored counts, or
    copy the figure an older Evaluate drew); False when it has none."""
    matrix = read_confusion(eval_dir)
    if matrix is not None:
        plot_confusion(matrix, target)
        return True
    figure = eval_dir / CONFUSION_PNG
    if figure.is_file():
        shutil.copyfile(figure, target)
        return True
    return False


def write_report(catalog: Catalog, out: Path) -> Path:
    """Write the site into ``out`` (created; only Forge's own report files are replaced).

    Returns:
        The index page.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiments").mkdir(exist_ok=True)
    for record in catalog.records:
        page = _experiment_page(catalog.root, fresh_record(catalog.root, record), out)
        (out / "experiments" / f"{record['id']}.html").write_text(page, encoding="utf-8")
    index = out / "index.html"
    index.write_text(_index(catalog), encoding="utf-8")
    return index

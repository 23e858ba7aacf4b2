"""``forge report``: a static HTML site (index table + one page per experiment).

Plain files that open from disk in any browser: no server, no external assets. The index
compares: learning curves of several experiments on one figure per common metric, the
headline metric against each hyperparameter the experiments differ in (a sweep's
scatter plots), and a table that sorts by a click on a header and filters as one types
(a small inline script; the state lives in the URL hash, ``#sort=-best&filter=torch``, so
a view can be linked or bookmarked). Every value is HTML-escaped; images are PNGs beside
the pages.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from html import escape
from pathlib import Path

from tasks.cli.plot import plot_against, plot_confusion, plot_learning_curves, plot_metric
from tasks.cli.query import value_of
from tasks.cli.show import command_line, environment_lines
from tasks.cli.table import cell, default_columns, differing_keys, format_value
from tasks.store.catalog import Catalog, fresh_record
from tasks.store.metrics_log import read_metrics
from tasks.store.names import CONFIG_FILE, CONFUSION_PNG, EVAL_DIR, METRICS_FILE
from tasks.store.records import RunRecord, read_confusion
from tasks.store.summary import Record, stored_text

__all__ = ["MAX_CURVES", "MAX_SCATTERS", "write_report"]

# At most this many experiments per learning-curve figure (more is unreadable), and this
# many hyperparameter scatter plots.
MAX_CURVES = 10
MAX_SCATTERS = 12

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
th[data-key] { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
#filter { font-size: 14px; padding: 4px 8px; margin: 0 0 1em; width: 24em; }
.figures img { max-width: 32%; min-width: 300px; }
.tag { background: #ddf4ff; border-radius: 8px; padding: 0 6px; margin-right: 3px; }
"""

# Sorting and filtering of the index table. One function, apply(), renders the state
# {sort, desc, filter}; header clicks and typing change the state and call it, and so does
# the URL hash on load (#sort=-best&filter=torch), so a view can be shared as a link.
_SCRIPT = r"""
(function () {
  var table = document.getElementById("experiments");
  var body = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var input = document.getElementById("filter");
  var state = {sort: null, desc: false, filter: ""};
  function cellValue(row, i, numeric) {
    var c = row.cells[i], v = c.getAttribute("data-value");
    if (v === null) { v = c.textContent; }
    if (numeric) { var f = parseFloat(v); return isNaN(f) ? null : f; }
    return v === "" || v === "-" ? null : v.toLowerCase();
  }
  function apply() {
    var rows = Array.prototype.slice.call(body.rows);
    var i = heads.findIndex(function (th) { return th.dataset.key === state.sort; });
    if (i >= 0) {
      var numeric = heads[i].dataset.type === "num";
      rows.sort(function (a, b) {
        var x = cellValue(a, i, numeric), y = cellValue(b, i, numeric);
        if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
        var r = x < y ? -1 : (x > y ? 1 : 0);
        return state.desc ? -r : r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    }
    heads.forEach(function (th) {
      var on = th.dataset.key === state.sort;
      th.setAttribute("aria-sort", on ? (state.desc ? "descending" : "ascending") : "none");
    });
    var words = state.filter.toLowerCase().split(/\s+/).filter(Boolean), shown = 0;
    rows.forEach(function (r) {
      var text = r.textContent.toLowerCase();
      r.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
      if (!r.hidden) { shown += 1; }
    });
    document.getElementById("shown").textContent = String(shown);
    if (input.value !== state.filter) { input.value = state.filter; }
    var hash = [];
    var sign = state.desc ? "-" : "";
    if (state.sort) { hash.push("sort=" + encodeURIComponent(sign + state.sort)); }
    if (state.filter) { hash.push("filter=" + encodeURIComponent(state.filter)); }
    var url = hash.length ? "#" + hash.join("&") : location.pathname + location.search;
    try { history.replaceState(null, "", url); } catch (e) { /* some file:// setups */ }
  }
  heads.forEach(function (th) {
    th.addEventListener("click", function () {
      state.desc = state.sort === th.dataset.key ? !state.desc : false;
      state.sort = th.dataset.key;
      apply();
    });
  });
  input.addEventListener("input", function () { state.filter = input.value; apply(); });
  location.hash.replace(/^#/, "").split("&").forEach(function (part) {
    var kv = part.split("="), value = decodeURIComponent(kv.slice(1).join("="));
    if (kv[0] === "sort" && value) {
      state.desc = value.charAt(0) === "-";
      state.sort = value.replace(/^[-+]/, "");
    } else if (kv[0] === "filter") { state.filter = value; }
  });
  apply();
})();
"""


def _page(title: str, body: str, script: str = "") -> str:
    tail = f"<script>{script}</script>\n" if script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n{tail}</body></html>\n"
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], html_cells: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f"<td>{c if html_cells else escape(c)}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "</tbody></table>"


def _tags_html(tags: Sequence[str]) -> str:
    return "".join(f'<span class="tag">{escape(t)}</span>' for t in tags)


def _numeric_column(records: Sequence[Record], key: str) -> bool:
    if key == "epochs":
        return True
    values = [value_of(r, key) for r in records]
    present = [v for v in values if v is not None]
    return bool(present) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in present
    )


def _index_table(records: Sequence[Record]) -> str:
    columns = default_columns(records)
    numeric = {c.key: _numeric_column(records, c.key) for c in columns}
    rows = []
    for record in records:
        tds = []
        for column in columns:
            key = column.key
            text = escape(cell(record, key))
            if key == "id":
                text = f'<a href="experiments/{escape(record["id"])}.html">{text}</a>'
            elif key == "status":
                text = f'<span class="{text}">{text}</span>'
            elif key == "tags":
                text = _tags_html(record.get("tags") or [])
            if numeric[key]:
                raw = record.get("epochs") if key == "epochs" else value_of(record, key)
                shown = "" if raw is None else repr(float(raw))
                tds.append(f'<td class="num" data-value="{shown}">{text}</td>')
            else:
                tds.append(f"<td>{text}</td>")
        rows.append(f'<tr class="experiment" data-id="{escape(record["id"])}">{"".join(tds)}</tr>')
    # Full dotted keys here: a page has the width a terminal lacks.
    head = "".join(
        f'<th data-key="{escape(c.key)}" data-type="{"num" if numeric[c.key] else "text"}" '
        f'title="sort by {escape(c.key)}">{escape(c.key if "." in c.key else c.header)}</th>'
        for c in columns
    )
    return (
        f'<table id="experiments"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(rows)
        + "</tbody></table>"
    )


def _label(record: Record, differ: Sequence[str]) -> str:
    extra = " ".join(
        f"{k.rsplit('.', 1)[-1]}={format_value(record['config'].get(k))}" for k in differ[:3]
    )
    return f"{record['id'][:8]} {extra}".strip()


def _curves(catalog: Catalog, records: Sequence[Record], out: Path) -> list[str]:
    """One figure per metric that at least two experiments logged; up to MAX_CURVES
    experiments each (the best by their monitored value first)."""
    logged: dict[str, int] = {}
    for record in records:
        rows = read_metrics(catalog.root / record["path"] / METRICS_FILE)
        for name in dict.fromkeys(k for row in rows for k in row if k != "epoch"):
            logged[name] = logged.get(name, 0) + 1
    common = sorted((m for m, n in logged.items() if n >= 2), key=lambda m: ("val" not in m, m))
    if not common:
        return []
    monitors = [(r.get("best") or {}).get("value") for r in records]
    ranked = [r for _v, r in sorted(zip(monitors, records, strict=True), key=_by_value)]
    chosen = ranked[:MAX_CURVES]
    differ = differing_keys(chosen)
    curves = [(_label(r, differ), catalog.root / r["path"]) for r in chosen]
    parts = []
    for metric in common:
        image = out / "compare" / f"curves-{_slug(metric)}.png"
        plot_metric(curves, metric, image)
        parts.append(f'<img alt="learning curves {escape(metric)}" src="compare/{image.name}">')
    note = (
        f" (the {MAX_CURVES} best of {len(records)} by their monitored value)"
        if len(records) > MAX_CURVES
        else ""
    )
    return [
        f"<h2>Learning curves</h2>\n<p>One figure per metric, experiments overlaid{note}.</p>",
        f'<div class="figures">{"".join(parts)}</div>',
    ]


def _by_value(pair: tuple[float | None, Record]) -> tuple[bool, float]:
    value, record = pair
    mode = (record.get("config") or {}).get("train.mode", "min")
    if value is None:
        return (True, 0.0)
    return (False, value if mode == "min" else -value)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def _scatters(records: Sequence[Record], out: Path) -> list[str]:
    """The headline metric against every config key the experiments differ in."""
    scored = [r for r in records if (r.get("best") or {}).get("value") is not None]
    monitors = {(r.get("best") or {}).get("metric") for r in scored}
    if len(scored) < 2 or len(monitors) != 1:
        return []
    metric = f"best {next(iter(monitors))}"
    parts = []
    for key in differing_keys(scored)[:MAX_SCATTERS]:
        points = [
            (r["config"][key], float(r["best"]["value"]), r["id"][:8])
            for r in scored
            if r["config"].get(key) is not None
        ]
        if len({format_value(x) for x, _y, _l in points}) < 2:
            continue
        image = out / "compare" / f"against-{_slug(key)}.png"
        plot_against(points, key, metric, image)
        parts.append(
            f'<img alt="{escape(metric)} against {escape(key)}" src="compare/{image.name}">'
        )
    if not parts:
        return []
    return [
        f"<h2>{escape(metric)} against each hyperparameter</h2>\n<p>One point per "
        "experiment, for every config key the experiments differ in.</p>",
        f'<div class="figures">{"".join(parts)}</div>',
    ]


def _index(catalog: Catalog, out: Path) -> str:
    records = catalog.records
    body = [
        f"<h1>Forge experiments</h1>\n<p>{len(records)} experiments in "
        f"<code>{escape(catalog.root.name or str(catalog.root))}</code>; "
        '<span id="shown">' + str(len(records)) + "</span> shown.</p>",
        '<input id="filter" type="search" placeholder="filter: words every row must contain"'
        ' aria-label="filter experiments">',
        _index_table(records),
    ]
    body += _curves(catalog, records, out)
    body += _scatters(records, out)
    return _page("Forge experiments", "\n".join(body), _SCRIPT)


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
    items += [(line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in environment_lines(run)]
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
        f"<p>tags: {_tags_html(record.get('tags') or []) or '-'}</p>",
        *(
            [f'<h2>Note</h2>\n<pre class="note">{escape(record["note"])}</pre>']
            if record.get("note")
            else []
        ),
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
    index.write_text(_index(catalog, out), encoding="utf-8")
    return index

"""``forge ls``: listing real experiments, JSON/CSV, filters, sort, width, the index."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.store.catalog import load_catalog
from tasks.store.names import INDEX_FILE, META_FILE
from tasks.store.versions import RACY_NS
from tests.cli.forge_support import (
    MODELS,
    MOONS,
    REPO,
    TF_AVAILABLE,
    Trained,
    copy_results,
    forge,
    invoke,
    listing,
    luigi_env,
    run_luigi,
    trained,
)

pytestmark = pytest.mark.slow  # trains real experiments through the luigi command


@pytest.fixture(scope="module")
def exps(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained(tmp_path_factory)


def test_json_round_trips_and_lists_every_experiment(exps: Trained) -> None:
    records = listing(exps.root)
    on_disk = sorted(p.parent for p in exps.root.glob("*/*/*/config.yaml"))
    assert len(records) == len(exps.runs) == len(on_disk)
    assert sorted(exps.root / r["path"] for r in records) == on_disk
    assert json.loads(json.dumps(records)) == records
    for record in records:
        assert record["status"] == "done"
        assert record["epochs"] == record["epochs_total"] == 2
        assert 0.0 <= record["metrics"]["test.accuracy"] <= 1.0
        assert record["config"]["train"]["epochs"] == 2  # nested again, as in config.yaml
    frameworks = {r["framework"] for r in records}
    assert frameworks == ({"torch", "tensorflow"} if TF_AVAILABLE else {"torch"})


def test_table_shows_differing_config_and_fits_80_columns(exps: Trained) -> None:
    code, output = invoke("ls", exps.root)
    assert code == 0, output
    lines = output.splitlines()
    assert all(len(line) <= 80 for line in lines), output
    header = lines[0].split()
    assert header[:1] == ["id"] and "status" in header and "test.acc" in header
    assert "hidden" in header  # the one model param the experiments differ in
    ids = {r["id"][:8] for r in listing(exps.root)}
    assert {line.split()[0] for line in lines[2 : 2 + len(ids)]} == ids


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_where_filters(exps: Trained, framework: str) -> None:
    if framework == "tensorflow" and not TF_AVAILABLE:
        pytest.skip("TensorFlow backend not installed")
    everything = listing(exps.root)
    code, output = invoke("ls", exps.root, "--json", "--where", f"framework={framework}")
    assert code == 0, output
    picked = json.loads(output)
    assert picked and all(r["framework"] == framework for r in picked)
    assert len(picked) == sum(r["framework"] == framework for r in everything)


def test_where_numeric_list_and_combined(exps: Trained) -> None:
    everything = listing(exps.root)
    cut = sorted(r["metrics"]["test.accuracy"] for r in everything)[len(everything) // 2]
    code, output = invoke("ls", exps.root, "--json", "--where", f"test.accuracy>={cut}")
    expected = {r["id"] for r in everything if r["metrics"]["test.accuracy"] >= cut}
    assert {r["id"] for r in json.loads(output)} == expected
    code, output = invoke(
        "ls", exps.root, "--json", "-w", "model.params.hidden==[16]", "-w", "framework!=tensorflow"
    )
    picked = json.loads(output)
    assert [r["config"]["model"]["params"]["hidden"] for r in picked] == [[16]]
    code, output = invoke("ls", exps.root, "--json", "-w", "test.accuracy<0")
    assert json.loads(output) == []


def test_sort_ascending_and_descending(exps: Trained) -> None:
    code, output = invoke("ls", exps.root, "--json", "--sort", "-test.accuracy")
    values = [r["metrics"]["test.accuracy"] for r in json.loads(output)]
    assert values == sorted(values, reverse=True)
    code, output = invoke("ls", exps.root, "--json", "--sort", "best")
    values = [r["best"]["value"] for r in json.loads(output)]
    assert values == sorted(values)


def test_unknown_key_is_one_clear_error(exps: Trained) -> None:
    code, output = invoke("ls", exps.root, "--where", "test.acuracy>0.5")
    assert code == 1
    assert "test.acuracy" in output and "did you mean" in output and "Traceback" not in output


def test_columns_and_csv(exps: Trained) -> None:
    code, output = invoke(
        "ls", exps.root, "--csv", "--columns", "id,framework,test.accuracy,model.params.hidden"
    )
    assert code == 0, output
    rows = list(csv.DictReader(io.StringIO(output)))
    records = {r["id"]: r for r in listing(exps.root)}
    assert len(rows) == len(records)
    for row in rows:
        record = records[row["id"]]
        assert row["framework"] == record["framework"]
        assert float(row["test.accuracy"]) == record["metrics"]["test.accuracy"]
        assert (
            json.loads(row["model.params.hidden"]) == record["config"]["model"]["params"]["hidden"]
        )
    code, output = invoke("ls", exps.root, "--columns", "id,nonsense")
    assert code == 1 and "nonsense" in output


def test_rich_table_on_a_terminal(exps: Trained) -> None:
    from rich.console import Console

    from tasks.cli import table

    records = load_catalog(exps.root).records
    columns = table.default_columns(records)
    matrix = table.cells(records, columns)
    shown, _hidden = table.fit_columns(columns, matrix, 80)
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    table.render_rich(records, columns, matrix, shown, console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(r["id"][:8] in text for r in records)
    assert max(len(line) for line in text.splitlines()) <= 80


def test_half_written_experiment_lists_as_incomplete(exps: Trained, tmp_path: Path) -> None:
    root = copy_results(exps.root, tmp_path / "results")
    model_dir = next(root.glob("*/*/*/config.yaml")).parent.parent
    crashed = model_dir / "tiny_train-0123abcd"
    crashed.mkdir()
    (crashed / ".digest").write_text("0123abcd" * 8 + "\n")
    (crashed / "config.yaml").write_text("data: {loader: moo")  # torn mid-write
    (crashed / "run.json").write_text('{"status": "runn')
    (crashed / "metrics.csv").write_text("epoch,loss,val_loss\n1,0.5,0.6\n2,0.4")
    code, output = invoke("ls", root)
    assert code == 0, output
    assert "incomplete" in output
    records = listing(root)
    statuses = {r["path"]: r["status"] for r in records}
    assert statuses[str(crashed.relative_to(root))] == "incomplete"
    assert sum(s == "done" for s in statuses.values()) == len(exps.runs)
    code, output = invoke("show", crashed)
    assert code == 0 and "incomplete" in output


def test_index_is_reused_and_rebuilt(exps: Trained, tmp_path: Path) -> None:
    root = copy_results(exps.root, tmp_path / "results")
    assert load_catalog(root, rebuild=True).reread == len(exps.runs)
    assert (root / INDEX_FILE).is_file()
    assert load_catalog(root).reread == 0  # every record still valid: nothing re-read
    (root / INDEX_FILE).write_text("{not json\n")  # a damaged index is just rebuilt
    assert [r["id"] for r in load_catalog(root).records] == [r["id"] for r in listing(root)]
    code, output = invoke("ls", root, "--rebuild")
    assert code == 0 and output.count("done") == len(exps.runs)


def test_task_completion_updates_the_index(exps: Trained, tmp_path: Path) -> None:
    root = copy_results(exps.root, tmp_path / "results")
    load_catalog(root)
    lines_before = len((root / INDEX_FILE).read_text().splitlines())
    run_luigi(
        "Evaluate",
        "--data-config",
        MOONS,
        "--model-config",
        MODELS["torch"],
        "--train-config",
        exps.train_config,
        "--overrides",
        "train.epochs=2",
        "--eval-config",
        REPO / "configs" / "eval" / "val_last.yaml",
        results=root,
    )
    lines = (root / INDEX_FILE).read_text().splitlines()
    assert len(lines) == lines_before + 1  # the Evaluate hook appended one fresh record
    appended = json.loads(lines[-1])
    assert "val.accuracy" in appended["metrics"] and "test.accuracy" in appended["metrics"]
    catalog = load_catalog(root)
    assert catalog.reread == 0  # the appended record is trusted as it stands
    record = next(r for r in catalog.records if r["path"] == appended["path"])
    assert record["metrics"]["val.accuracy"] == appended["metrics"]["val.accuracy"]


def test_forge_ls_subprocess_without_torch_or_tensorflow(exps: Trained) -> None:
    proc = forge("ls", exps.root, "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == len(exps.runs)
    probe = (
        "import sys\n"
        "from tasks.cli.app import app\n"
        "try:\n"
        f"    app(['ls', {str(exps.root)!r}], standalone_mode=False)\n"
        "finally:\n"
        "    heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow')]\n"
        "    print('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=luigi_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout[-2000:]


def _settle() -> None:
    """Wait out the timestamp granularity (RACY_NS): only then may the index trust a record."""
    time.sleep(RACY_NS / 1e9 + 0.1)


def test_a_damaged_experiment_is_re_read_until_it_is_repaired(
    exps: Trained, tmp_path: Path
) -> None:
    root = copy_results(exps.root, tmp_path / "results")
    meta = next(root.glob(f"*/{META_FILE}"))
    intact = meta.read_bytes()
    meta.write_text('{"arrays": [', encoding="utf-8")  # damaged in place: every experiment on it
    hit = {r["path"] for r in load_catalog(root).records if r["path"].startswith(meta.parent.name)}
    assert hit
    _settle()
    load_catalog(root)
    catalog = load_catalog(root)
    # Damaged records are never trusted from the index: a repair in place (what the damage
    # message advises: restore the file from a copy) moves no folder time.
    assert catalog.reread == len(hit)
    assert {r["path"]: r["status"] for r in catalog.records if r["path"] in hit} == dict.fromkeys(
        hit, "damaged"
    )
    meta.write_bytes(intact)  # restored in place, as `cp backup meta.json` does
    catalog = load_catalog(root)
    assert all(r["status"] == "done" for r in catalog.records if r["path"] in hit)
    # Damaged again in place (same inode, same folder mtimes): the file's own version moved.
    _settle()
    load_catalog(root)
    assert load_catalog(root).reread == 0
    meta.write_text('{"arrays": [', encoding="utf-8")
    statuses = {r["path"]: r["status"] for r in load_catalog(root).records}
    assert all(statuses[p] == "damaged" for p in hit), statuses

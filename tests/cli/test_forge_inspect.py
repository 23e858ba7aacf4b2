"""``forge show``, ``forge diff`` and ``forge plot`` on real experiments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.forge_support import FRAMEWORK_PARAMS, Trained, invoke, listing, trained


@pytest.fixture(scope="module")
def exps(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained(tmp_path_factory)


def _by_framework(exps: Trained, framework: str) -> dict[str, object]:
    return next(
        r
        for r in listing(exps.root)
        if r["framework"] == framework and r["config"]["model"]["params"]["hidden"] != [16]
    )


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_show_by_id_prefix_and_by_folder(exps: Trained, framework: str) -> None:
    record = _by_framework(exps, framework)
    code, output = invoke("show", record["id"][:6], "--results-dir", exps.root)
    assert code == 0, output
    assert f"experiment {record['id']}  done" in output
    assert f"framework {framework}" in output
    assert "git " in output and "duration" in output and "versions" in output
    assert "epochs: 2" in output  # the resolved config
    assert "split test, checkpoint best: accuracy=" in output
    assert "metrics.csv" in output and "config.yaml" in output  # the file list
    code, by_path = invoke("show", exps.root / str(record["path"]))
    assert code == 0 and by_path == output


def test_show_unknown_and_ambiguous(exps: Trained) -> None:
    code, output = invoke("show", "zzzz", "-r", exps.root)
    assert code == 1 and "no experiment 'zzzz'" in output
    code, output = invoke("show", "moons", "-r", exps.root)  # every path starts so
    assert code == 1 and "matches" in output and "longer prefix" in output


def test_diff_is_nested_with_metrics_side_by_side(exps: Trained) -> None:
    records = listing(exps.root)
    wide = next(
        r
        for r in records
        if r["framework"] == "torch" and r["config"]["model"]["params"]["hidden"] != [16]
    )
    narrow = next(r for r in records if r["config"]["model"]["params"]["hidden"] == [16])
    code, output = invoke("diff", wide["id"][:8], narrow["id"][:8], "-r", exps.root)
    assert code == 0, output
    assert "model:\n    params:\n      hidden: [128,64] → [16]" in output
    assert "train:" not in output  # identical sections are not shown
    line = next(x for x in output.splitlines() if x.strip().startswith("test.accuracy"))
    assert line.split()[1:] == [
        f"{wide['metrics']['test.accuracy']:.4g}",
        f"{narrow['metrics']['test.accuracy']:.4g}",
    ]
    code, output = invoke("diff", wide["id"][:8], narrow["id"][:8], "-r", exps.root, "--json")
    payload = json.loads(output)
    assert payload["config"] == {"model": {"params": {"hidden": {"a": [128, 64], "b": [16]}}}}
    code, output = invoke("diff", wide["id"][:8], wide["id"][:8], "-r", exps.root)
    assert "config: identical" in output


def test_plot_writes_one_figure_for_several(exps: Trained, tmp_path: Path) -> None:
    ids = [r["id"][:8] for r in listing(exps.root)]
    out = tmp_path / "curves.png"
    code, output = invoke("plot", *ids, "--metric", "val_loss", "-o", out, "-r", exps.root)
    assert code == 0, output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    code, output = invoke("plot", ids[0], "--metric", "nope", "-o", out, "-r", exps.root)
    assert code == 1 and "val_loss" in output  # lists what was logged

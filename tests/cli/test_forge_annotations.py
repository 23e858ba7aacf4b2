"""``forge tag``/``untag``/``note``: annotations on real experiments, through the commands."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tasks.errors import ConfigError, CorruptArtifactError
from tasks.store.annotations import annotate
from tasks.store.names import ANNOTATIONS_FILE, DIGEST_FILE, INDEX_FILE, SUCCESS
from tasks.store.records import AnnotationRecord
from tests.cli.forge_support import (
    MODELS,
    MOONS,
    REPO,
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


@pytest.fixture
def results(exps: Trained, tmp_path: Path) -> Path:
    return copy_results(exps.root, tmp_path / "results")


def _ids(root: Path, *args: str) -> set[str]:
    code, output = invoke("ls", root, "--json", *args)
    assert code == 0, output
    return {r["id"] for r in json.loads(output)}


def test_tag_note_untag_show_and_filter(results: Path) -> None:
    records = listing(results)
    first, second = records[0]["id"], records[1]["id"]
    assert forge("ls", results).returncode == 0  # an index exists: it must notice the tags
    proc = forge("tag", first[:8], "baseline", "lr:v1", "-r", results)
    assert proc.returncode == 0, proc.stderr
    assert "baseline, lr:v1" in proc.stdout
    assert forge("tag", second[:8], "baseline", "-r", results).returncode == 0
    note = forge("note", first[:8], "the first try\nwith a second line", "-r", results)
    assert note.returncode == 0, note.stderr

    assert _ids(results, "--tag", "baseline") == {first, second}
    assert _ids(results, "--tag", "baseline", "--tag", "lr:v1") == {first}
    assert _ids(results, "--where", "tags==lr:v1") == {first}
    assert _ids(results, "--where", "tags!=lr:v1") == {r["id"] for r in records} - {first}
    assert _ids(results, "--tag", "nobody") == set()
    shown = {r["id"]: r for r in listing(results)}
    assert shown[first]["tags"] == ["baseline", "lr:v1"]
    assert shown[first]["note"] == "the first try\nwith a second line"
    table = forge("ls", results, "--tag", "lr:v1", "--width", "200")
    assert "baseline,lr:v1" in table.stdout, table.stdout

    show = forge("show", first[:8], "-r", results)
    assert "tags       baseline, lr:v1" in show.stdout
    assert "note       the first try" in show.stdout and "with a second line" in show.stdout

    assert forge("untag", first[:8], "baseline", "absent", "-r", results).returncode == 0
    assert forge("note", first[:8], "", "-r", results).returncode == 0
    assert _ids(results, "--tag", "baseline") == {second}
    after = {r["id"]: r for r in listing(results)}[first]
    assert after["tags"] == ["lr:v1"] and after["note"] is None
    # Every listing above went through the index; a rebuild from the folders agrees.
    assert (results / INDEX_FILE).is_file()
    assert _ids(results, "--tag", "baseline", "--rebuild") == {second}


def test_annotations_never_rerun_a_step_nor_change_its_identity(
    exps: Trained, results: Path
) -> None:
    framework, overrides = exps.runs[0]
    record = next(r for r in listing(results) if r["framework"] == framework)
    folder = results / record["path"]
    markers = [folder / DIGEST_FILE, folder / SUCCESS, folder.parent / DIGEST_FILE]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in markers}
    assert forge("tag", record["id"][:8], "keep", "-r", results).returncode == 0
    assert forge("note", record["id"][:8], "kept", "-r", results).returncode == 0
    output = run_luigi(
        "Evaluate",
        "--data-config",
        MOONS,
        "--model-config",
        MODELS[framework],
        "--train-config",
        exps.train_config,
        "--overrides",
        overrides,
        results=results,
    )
    assert ") running " not in output, output[-3000:]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in markers} == before
    again = {r["id"]: r for r in listing(results)}
    assert again[record["id"]]["tags"] == ["keep"]  # same id: identity unchanged
    assert sorted(p.name for p in folder.iterdir() if "annotations" in p.name) == [
        ".annotations.lock",
        ANNOTATIONS_FILE,
    ]


@pytest.mark.parametrize("bad", ["has space", "a,b", "_leading", "x" * 65, "é"])
def test_a_bad_tag_is_one_config_error_line(results: Path, bad: str) -> None:
    record = listing(results)[0]
    proc = forge("tag", record["id"][:8], "good", bad, "-r", results)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("forge: error: tag "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (results / record["path"] / ANNOTATIONS_FILE).exists()  # nothing half-done
    if "," not in bad:  # --tag a,b is two tags
        proc = forge("ls", results, "--tag", bad)
        assert proc.returncode == 1 and "--tag" in proc.stderr
    with pytest.raises(ConfigError, match="a tag is 1-64 characters"):
        annotate(results / record["path"], add=[bad])


def test_concurrent_tag_commands_lose_no_update(results: Path) -> None:
    record = listing(results)[0]
    folder = results / record["path"]
    script = Path(sys.executable).with_name("forge")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tasks.cli.app"]
    procs = [
        subprocess.Popen(
            [*command, "tag", str(folder), f"proc{i}"],
            cwd=REPO,
            env=luigi_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    # Many more writers, in threads: each read-modify-write must see the previous one.
    threads = [
        threading.Thread(target=annotate, args=(folder,), kwargs={"add": [f"thread{i}"]})
        for i in range(24)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tags = set(AnnotationRecord.read(folder).tags)
    assert tags == {f"proc{i}" for i in range(4)} | {f"thread{i}" for i in range(24)}


def test_a_damaged_annotations_file_is_shown_and_never_overwritten(results: Path) -> None:
    record = listing(results)[0]
    folder = results / record["path"]
    (folder / ANNOTATIONS_FILE).write_text('{"tags": ["half', encoding="utf-8")
    listed = {r["id"]: r for r in listing(results)}[record["id"]]
    assert listed["status"] == "done" and listed["tags"] == []
    assert "annotations.json: not valid JSON" in (listed["damage"] or "")
    proc = forge("tag", record["id"][:8], "more", "-r", results)
    assert proc.returncode == 1 and "annotations.json" in proc.stderr
    assert (folder / ANNOTATIONS_FILE).read_text(encoding="utf-8") == '{"tags": ["half'
    with pytest.raises(CorruptArtifactError):
        annotate(folder, add=["more"])

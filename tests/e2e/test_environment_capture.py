"""The captured environment: environment.txt and run.json's ``environment``, through the
real ``luigi`` command, and ``forge diff`` of the packages of two experiments."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from tasks.environment import installed_packages
from tasks.store.names import ENVIRONMENT_FILE, RUN_FILE
from tests.cli.forge_support import Trained, copy_results, forge, listing, trained

pytestmark = pytest.mark.slow  # trains real experiments through the luigi command


@pytest.fixture(scope="module")
def exps(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained(tmp_path_factory)


def test_every_train_records_its_packages_python_and_accelerators(exps: Trained) -> None:
    records = listing(exps.root)
    assert len(records) == len(exps.runs)
    for record in records:
        folder = exps.root / record["path"]
        lines = (folder / ENVIRONMENT_FILE).read_text(encoding="utf-8").splitlines()
        names = [line.partition("==")[0] for line in lines]
        assert names == sorted(names, key=str.lower) and len(lines) > 20
        assert all(line.count("==") == 1 for line in lines)
        assert f"luigi=={metadata.version('luigi')}" in lines
        # The framework's own distribution (tensorflow may be installed as tensorflow-cpu).
        framework = str(record["framework"])
        dists = [d for d in metadata.distributions() if d.name.lower().startswith(framework)]
        assert dists and any(f"{d.name}=={d.version}" in lines for d in dists)
        env = json.loads((folder / RUN_FILE).read_text())["environment"]
        python = env["python"]
        assert Path(python["executable"]).resolve() == Path(sys.executable).resolve()
        assert python["version"] == ".".join(map(str, sys.version_info[:3]))
        assert env["packages"] == len(lines) and env["packages_file"] == ENVIRONMENT_FILE
        assert set(env) >= {"cuda", "cudnn", "gpus"} and isinstance(env["gpus"], list)
        shown = forge("show", record["id"][:8], "-r", exps.root).stdout
        assert f"environment python {python['version']}" in shown
        assert f"{env['packages']} packages in {ENVIRONMENT_FILE}" in shown
        assert "accelerators cuda" in shown


def test_the_package_list_is_what_pip_freeze_lists() -> None:
    started = time.perf_counter()
    ours = installed_packages()
    took = time.perf_counter() - started
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()

    def norm(name: str) -> str:
        return name.lower().replace("_", "-").replace(".", "-")

    theirs = {norm(n): v for n, _, v in (line.partition("==") for line in pip)}
    assert {norm(n): v for n, v in ours.items()} == theirs
    assert took < 2.0, f"capturing the packages took {took:.2f} s"


def test_forge_diff_shows_added_removed_and_changed_packages(exps: Trained, tmp_path: Path) -> None:
    results = copy_results(exps.root, tmp_path / "results")
    a, b = listing(results)[:2]
    same = forge("diff", a["id"][:8], b["id"][:8], "-r", results)
    assert same.returncode == 0 and "packages: identical" in same.stdout, same.stdout
    file_b = results / b["path"] / ENVIRONMENT_FILE
    lines = file_b.read_text(encoding="utf-8").splitlines()
    removed, changed = lines[0], lines[1]
    name, _, version = changed.partition("==")
    lines = [f"{name}=={version}.post9", *lines[2:], "zz-extra-package==1.0"]
    file_b.write_text("\n".join(lines) + "\n", encoding="utf-8")

    proc = forge("diff", a["id"][:8], b["id"][:8], "-r", results)
    assert proc.returncode == 0, proc.stderr
    assert "packages (A → B: 1 added, 1 removed, 1 changed):" in proc.stdout
    assert "  + zz-extra-package==1.0" in proc.stdout
    assert f"  - {removed}" in proc.stdout
    assert f"  ~ {name}: {version} → {version}.post9" in proc.stdout
    data = json.loads(forge("diff", a["id"][:8], b["id"][:8], "-r", results, "--json").stdout)
    assert data["packages"]["added"] == {"zz-extra-package": "1.0"}
    assert data["packages"]["changed"] == {name: {"a": version, "b": f"{version}.post9"}}

    (results / a["path"] / ENVIRONMENT_FILE).unlink()
    proc = forge("diff", a["id"][:8], b["id"][:8], "-r", results)
    assert proc.returncode == 0 and f"A has no {ENVIRONMENT_FILE}" in proc.stdout

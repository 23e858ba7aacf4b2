"""Damage stays local: one damaged experiment never breaks the commands for the others.

A corpus of damage kinds (a malformed ``metrics.csv`` row, non-UTF-8 bytes, records of
the wrong types or shapes, a config that is not a mapping, a symbolic link where a file
belongs, a truncated ``.digest``) is applied to a copy of a real results tree, trained
once per module through the real ``luigi`` command. Then every ``forge`` command must go
on: the damaged experiment is listed as ``damaged`` with a one-line reason, the healthy
ones are untouched, and loading or evaluating the damaged one is one ForgeError line.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tasks.errors import ForgeError
from tasks.evaluate import Evaluate
from tasks.load_trained import LoadTrained
from tasks.store.names import (
    BEST_RECORD,
    CONFIG_FILE,
    DIGEST_FILE,
    EVAL_DIR,
    EVAL_METRICS_FILE,
    META_FILE,
    METRICS_FILE,
    MODEL_DIR,
    PARAMS_FILE,
    RUN_FILE,
)
from tests.cli.forge_support import MODELS, TF_AVAILABLE, forge, invoke, run_luigi
from tests.support import CONFIGS, write_yaml

pytestmark = pytest.mark.slow  # trains real experiments through the luigi command

MOONS = CONFIGS / "data" / "moons.yaml"
BLOBS = CONFIGS / "data" / "blobs.yaml"
# (data config, framework): the damaged experiment first; the others must stay healthy.
RUNS = [(MOONS, "torch"), (BLOBS, "torch")] + ([(MOONS, "tensorflow")] if TF_AVAILABLE else [])
NOT_UTF8 = b"\xff\xfe\x00garbage \xc3\x28\n"


@dataclass(frozen=True)
class Tree:
    """A trained results tree and the Luigi parameters of its experiments."""

    root: Path
    train_config: Path
    experiments: list[Path]  # in the order of RUNS


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    base = tmp_path_factory.mktemp("damage")
    train = write_yaml(base / "tiny.yaml", "epochs: 2\nbatch_size: 64\n")
    root = base / "results"
    for data, framework in RUNS:
        run_luigi(
            "Evaluate",
            "--data-config",
            data,
            "--model-config",
            MODELS[framework],
            "--train-config",
            train,
            results=root,
        )
    experiments = []
    for data, framework in RUNS:
        found = [
            p.parent
            for p in root.glob(f"{data.stem}-*/mlp_*/*/{CONFIG_FILE}")
            if MODELS[framework].stem in p.parent.parent.name
        ]
        assert len(found) == 1, found
        experiments.append(found[0])
    return Tree(root, train, experiments)


# -- the corpus: each kind damages the experiment folder it is given -------------------------

Damage = Callable[[Path, Path], None]  # (experiment folder, a folder outside the tree)


def write(rel: str, content: bytes | str) -> Damage:
    def apply(exp: Path, _outside: Path) -> None:
        data = content.encode() if isinstance(content, str) else content
        (exp / rel).write_bytes(data)

    return apply


def append(rel: str, content: bytes) -> Damage:
    def apply(exp: Path, _outside: Path) -> None:
        with (exp / rel).open("ab") as fh:
            fh.write(content)

    return apply


def symlink(rel: str) -> Damage:
    """The file replaced by a symbolic link to an intact copy outside the experiment:
    following it would even "work", which is exactly what must not happen."""

    def apply(exp: Path, outside: Path) -> None:
        target = outside / Path(rel).name
        shutil.copyfile(exp / rel, target)
        (exp / rel).unlink()
        (exp / rel).symlink_to(target)

    return apply


def truncate(rel: str, size: int) -> Damage:
    def apply(exp: Path, _outside: Path) -> None:
        path = exp / rel
        path.write_bytes(path.read_bytes()[:size])

    return apply


def first_eval(exp: Path) -> str:
    return f"{EVAL_DIR}/{next((exp / EVAL_DIR).iterdir()).name}"


def in_eval(make: Callable[[str], Damage], name: str) -> Damage:
    def apply(exp: Path, outside: Path) -> None:
        make(f"{first_eval(exp)}/{name}")(exp, outside)

    return apply


def in_data(make: Callable[[str], Damage], name: str) -> Damage:
    def apply(exp: Path, outside: Path) -> None:
        make(f"../../{name}")(exp, outside)

    return apply


@dataclass(frozen=True)
class Kind:
    damage: Damage
    mentions: str  # the file the one-line reason must name
    scope: str = "experiment"  # experiment | data (every experiment of the data step) | eval


KINDS = {
    "metrics_csv_bad_row": Kind(append(METRICS_FILE, b"3,not-a-number,0.5\n"), METRICS_FILE),
    "metrics_csv_extra_fields": Kind(append(METRICS_FILE, b"3,1,2,3,4,5,6,7,8,9\n"), METRICS_FILE),
    "metrics_csv_not_utf8": Kind(append(METRICS_FILE, NOT_UTF8), METRICS_FILE),
    "metrics_csv_symlink": Kind(symlink(METRICS_FILE), METRICS_FILE),
    "run_json_not_utf8": Kind(write(RUN_FILE, NOT_UTF8), RUN_FILE),
    "run_json_wrong_types": Kind(
        write(RUN_FILE, json.dumps({"status": 5, "seed": "x", "git": "abc", "versions": [1]})),
        RUN_FILE,
    ),
    "run_json_a_list": Kind(write(RUN_FILE, "[1, 2, 3]"), RUN_FILE),
    "run_json_symlink": Kind(symlink(RUN_FILE), RUN_FILE),
    "params_json_wrong_types": Kind(
        write(PARAMS_FILE, json.dumps({"data_config": 5, "overrides": ["x"]})), PARAMS_FILE
    ),
    "params_json_a_list": Kind(write(PARAMS_FILE, '["Train"]'), PARAMS_FILE),
    "params_json_not_utf8": Kind(write(PARAMS_FILE, NOT_UTF8), PARAMS_FILE),
    "best_json_wrong_types": Kind(
        write(f"{MODEL_DIR}/{BEST_RECORD}", '{"epoch": "two", "value": [0.1]}'), BEST_RECORD
    ),
    "best_json_a_list": Kind(write(f"{MODEL_DIR}/{BEST_RECORD}", "[2, 0.1]"), BEST_RECORD),
    "config_yaml_a_list": Kind(write(CONFIG_FILE, "- data\n- model\n"), CONFIG_FILE),
    "config_yaml_section_a_list": Kind(
        write(CONFIG_FILE, "data: {}\nmodel: [mlp]\ntrain: {epochs: 2}\n"), CONFIG_FILE
    ),
    "config_yaml_not_utf8": Kind(write(CONFIG_FILE, NOT_UTF8), CONFIG_FILE),
    "config_yaml_symlink": Kind(symlink(CONFIG_FILE), CONFIG_FILE),
    "digest_truncated": Kind(truncate(DIGEST_FILE, 20), DIGEST_FILE),
    "digest_not_utf8": Kind(write(DIGEST_FILE, NOT_UTF8), DIGEST_FILE),
    "meta_json_wrong_types": Kind(
        in_data(
            lambda rel: write(rel, json.dumps({"arrays": [1], "task": 3, "rows": "all"})),
            META_FILE,
        ),
        META_FILE,
        scope="data",
    ),
    "meta_json_a_list": Kind(
        in_data(lambda rel: write(rel, "[]"), META_FILE), META_FILE, scope="data"
    ),
    "eval_metrics_json_wrong_types": Kind(
        in_eval(
            lambda rel: write(rel, '{"metrics": {"accuracy": "high"}, "rows": "many"}'),
            EVAL_METRICS_FILE,
        ),
        EVAL_METRICS_FILE,
        scope="eval",
    ),
    "eval_metrics_json_a_list": Kind(
        in_eval(lambda rel: write(rel, "[0.9]"), EVAL_METRICS_FILE), EVAL_METRICS_FILE, "eval"
    ),
    "eval_metrics_json_not_utf8": Kind(
        in_eval(lambda rel: write(rel, NOT_UTF8), EVAL_METRICS_FILE), EVAL_METRICS_FILE, "eval"
    ),
}


@dataclass(frozen=True)
class Damaged:
    """A damaged copy of the tree: which experiments must read as damaged, which as done."""

    root: Path
    target: Path
    damaged: set[str]
    healthy: set[str]
    kind: Kind


def damaged_copy(tree: Tree, name: str, tmp_path: Path, target_index: int = 0) -> Damaged:
    root = tmp_path / "results"
    shutil.copytree(tree.root, root, symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    experiments = [root / p.relative_to(tree.root) for p in tree.experiments]
    target = experiments[target_index]
    kind = KINDS[name]
    kind.damage(target, outside)
    if kind.scope == "data":
        hit = {p for p in experiments if p.parent.parent == target.parent.parent}
    else:
        hit = {target}
    rel = {p.relative_to(root).as_posix() for p in experiments}
    damaged = {p.relative_to(root).as_posix() for p in hit}
    return Damaged(root, target, damaged, rel - damaged, kind)


def _ok(code: int, output: str) -> str:
    assert code == 0, output
    assert "Traceback" not in output, output
    return output


@pytest.mark.parametrize("name", list(KINDS))
def test_every_forge_command_goes_on_and_marks_the_damage(
    tree: Tree, name: str, tmp_path: Path
) -> None:
    case = damaged_copy(tree, name, tmp_path)
    root, target = case.root, case.target
    code, output = invoke("ls", root, "--json")
    records = {r["path"]: r for r in json.loads(_ok(code, output))}
    assert set(records) == case.damaged | case.healthy
    for path in case.damaged:
        reason = records[path]["damage"]
        assert records[path]["status"] == "damaged", records[path]
        assert case.kind.mentions in reason and "\n" not in reason, reason
    for path in case.healthy:
        assert records[path]["status"] == "done" and records[path]["damage"] is None, path
    healthy = sorted(case.healthy)[0]

    assert "damaged" in _ok(*invoke("ls", root, "--width", "200"))
    assert "damaged" in _ok(*invoke("show", target))
    assert "damaged" in _ok(*invoke("diff", target, root / healthy))
    status = _ok(*invoke("status", target))
    if case.kind.scope != "eval":  # a damaged evaluation is its own step
        assert "damaged" in status and case.kind.mentions in status, status
    _ok(*invoke("plot", target, root / healthy, "-m", "loss", "-o", tmp_path / "c.png"))
    _ok(*invoke("report", root, "-o", tmp_path / "report"))
    index = (tmp_path / "report" / "index.html").read_text()
    assert index.count('class="damaged"') == len(case.damaged), index
    # The index written by these commands lists the same, read back from the cache.
    again = {r["path"]: r["status"] for r in json.loads(_ok(*invoke("ls", root, "--json")))}
    assert again == {p: r["status"] for p, r in records.items()}


def _one_line(err: BaseException, mentions: str) -> None:
    text = str(err)
    assert "\n" not in text and mentions in text, text


@pytest.mark.parametrize("name", list(KINDS))
def test_load_trained_and_evaluate_are_one_clear_error(
    tree: Tree, name: str, tmp_path: Path
) -> None:
    case = damaged_copy(tree, name, tmp_path)
    if case.kind.scope == "eval":
        # The model is intact; the damaged evaluation is refused when it is read.
        exp = LoadTrained(case.target)
        assert exp.predict(np.zeros((3, 2), dtype=np.float32)).shape[0] == 3
        with pytest.raises(ForgeError) as err:
            _ = exp.evaluations
        _one_line(err.value, case.kind.mentions)
        return
    with pytest.raises(ForgeError) as err:
        LoadTrained(case.target).predict(np.zeros((3, 2), dtype=np.float32))
    _one_line(err.value, case.kind.mentions)
    if name == "digest_not_utf8":
        return  # the folder no longer claims these configs' content: they train beside it
    # A new evaluation of the damaged experiment (its Train is complete, so Luigi runs
    # only Evaluate): one clear error, and no evaluation folder left behind.
    eval_config = write_yaml(tmp_path / "val.yaml", "split: val\n")
    data = MOONS if "moons" in case.target.parents[1].name else BLOBS
    task = Evaluate(  # type: ignore[call-arg]
        data_config=str(data),
        model_config=str(MODELS["torch"]),
        train_config=str(tree.train_config),
        eval_config=str(eval_config),
        results_dir=str(case.root),
    )
    assert task.spec.dirs["train"] == case.target  # a truncated .digest is still found
    with pytest.raises(ForgeError) as err:
        task.run()
    _one_line(err.value, case.kind.mentions)
    assert not task.directory.exists()


def test_a_real_forge_and_luigi_subprocess_report_the_damage_in_one_line(
    tree: Tree, tmp_path: Path
) -> None:
    case = damaged_copy(tree, "run_json_wrong_types", tmp_path)
    proc = forge("ls", case.root)
    assert proc.returncode == 0 and "damaged" in proc.stdout, proc.stdout + proc.stderr
    proc = forge("show", case.target)
    assert proc.returncode == 0 and "damaged" in proc.stdout, proc.stdout + proc.stderr
    eval_config = write_yaml(tmp_path / "val.yaml", "split: val\n")
    from tests.support import run_luigi as luigi_command

    result = luigi_command(
        "Evaluate",
        "--data-config",
        MOONS,
        "--model-config",
        MODELS["torch"],
        "--train-config",
        tree.train_config,
        "--eval-config",
        eval_config,
        results_dir=case.root,
    )
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if "CorruptArtifactError" in line]
    assert len(errors) == 1 and RUN_FILE in errors[0], result.output


@pytest.mark.tensorflow
@pytest.mark.skipif(not TF_AVAILABLE, reason="TensorFlow backend not installed")
def test_a_damaged_tensorflow_experiment_is_one_clear_error(tree: Tree, tmp_path: Path) -> None:
    case = damaged_copy(tree, "best_json_wrong_types", tmp_path, target_index=2)
    with pytest.raises(ForgeError) as err:
        LoadTrained(case.target).predict(np.zeros((3, 2), dtype=np.float32))
    _one_line(err.value, BEST_RECORD)
    with pytest.raises(ForgeError) as err:
        LoadTrained(case.target, code_free=True).predict(np.zeros((3, 2), dtype=np.float32))
    _one_line(err.value, BEST_RECORD)

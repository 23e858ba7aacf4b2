"""Config inheritance (``base:``) and ``${section.key}`` interpolation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.config.resolve import parse_overrides, resolve_section, resolve_sections
from tasks.errors import ConfigError
from tests.support import CONFIGS, write_yaml

LEVELS = ("data", "model", "train", "eval")
MOONS = str(CONFIGS / "data" / "moons.yaml")
MLP = str(CONFIGS / "model" / "mlp_torch.yaml")


def _resolve(train: Path | str | None, overrides: str = "", model: str = MLP) -> dict:
    paths = {"data": MOONS, "model": model, "train": str(train) if train else None, "eval": None}
    return resolve_sections(LEVELS, paths, parse_overrides(overrides))


def test_child_deep_merges_over_its_base(tmp_path: Path) -> None:
    write_yaml(
        tmp_path / "common" / "base.yaml",
        "epochs: 7\noptimizer: {name: sgd, lr: 0.1, momentum: 0.9}\n",
    )
    child = write_yaml(
        tmp_path / "runs" / "child.yaml", "base: ../common/base.yaml\noptimizer: {lr: 0.5}\n"
    )
    config = resolve_section("train", child).config
    assert config["epochs"] == 7
    assert config["optimizer"] == {"name": "sgd", "lr": 0.5, "momentum": 0.9, "weight_decay": 0.0}


def test_lists_replace_and_chains_merge_in_order(tmp_path: Path) -> None:
    write_yaml(tmp_path / "a.yaml", "framework: torch\nbuilder: mlp\nparams: {hidden: [8, 8, 8]}\n")
    write_yaml(tmp_path / "b.yaml", "base: a.yaml\nparams: {hidden: [4], dropout: 0.3}\n")
    c = write_yaml(tmp_path / "c.yaml", "base: b.yaml\nparams: {dropout: 0.2}\n")
    assert resolve_section("model", c).config["params"]["hidden"] == [4]
    assert resolve_section("model", c).config["params"]["dropout"] == 0.2


def test_child_and_flat_equivalent_have_one_identity(tmp_path: Path) -> None:
    write_yaml(tmp_path / "base.yaml", "epochs: 3\noptimizer: {lr: 0.01}\nname: run\n")
    child = write_yaml(tmp_path / "child.yaml", "base: base.yaml\nbatch_size: 16\n")
    flat = write_yaml(
        tmp_path / "flat.yaml", "name: run\nepochs: 3\nbatch_size: 16\noptimizer: {lr: 0.01}\n"
    )
    a, b = resolve_section("train", child), resolve_section("train", flat)
    assert (a.digest, a.name, a.config) == (b.digest, b.name, b.config)


def test_editing_the_base_gives_a_new_experiment(tmp_path: Path) -> None:
    base = write_yaml(tmp_path / "base.yaml", "epochs: 3\n")
    child = write_yaml(tmp_path / "child.yaml", "base: base.yaml\n")
    before = _resolve(child)["train"]
    base.write_text("epochs: 4\n")
    os.utime(base, ns=(1, 1))  # a different stat even within the clock's resolution
    after = _resolve(child)["train"]
    assert (before.config["epochs"], after.config["epochs"]) == (3, 4)
    assert before.digest != after.digest


def test_relative_data_path_in_a_base_is_relative_to_the_base(tmp_path: Path) -> None:
    import numpy as np

    (tmp_path / "shared").mkdir()
    np.savez(tmp_path / "shared" / "d.npz", x=np.zeros((4, 2)))
    write_yaml(tmp_path / "shared" / "base.yaml", "loader: npz\nparams: {path: d.npz}\n")
    child = write_yaml(tmp_path / "child" / "data.yaml", "base: ../shared/base.yaml\n")
    resolved = resolve_section("data", child)
    assert resolved.config["params"]["path"] == str((tmp_path / "shared" / "d.npz").resolve())


@pytest.mark.parametrize(
    ("files", "match"),
    [
        pytest.param({"a.yaml": "base: a.yaml\n"}, "makes a cycle", id="self"),
        pytest.param({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, "cycle", id="two"),
        pytest.param(
            {"a.yaml": "base: nope.yaml\n"}, "base config 'nope.yaml' does not exist", id="missing"
        ),
        pytest.param(
            {"a.yaml": "base: [x.yaml]\n"}, "must be the path of another config", id="list"
        ),
    ],
)
def test_bad_bases_are_one_config_error(tmp_path: Path, files: dict[str, str], match: str) -> None:
    for name, text in files.items():
        write_yaml(tmp_path / name, text)
    with pytest.raises(ConfigError, match=match) as info:
        resolve_section("train", tmp_path / "a.yaml")
    assert "key 'base'" in str(info.value) and "\n" not in str(info.value)


def test_whole_value_reference_keeps_the_type(tmp_path: Path) -> None:
    model = write_yaml(
        tmp_path / "m.yaml",
        "framework: torch\nbuilder: mlp\nseed: 5\nparams: {hidden: [16, '${model.seed}']}\n",
    )
    train = write_yaml(
        tmp_path / "t.yaml", "seed: ${model.seed}\nepochs: ${model.params.hidden.0}\n"
    )
    sections = _resolve(train, model=str(model))
    assert sections["model"].config["params"]["hidden"] == [16, 5]
    assert sections["train"].config["seed"] == 5 and sections["train"].config["epochs"] == 16


def test_reference_to_a_default_and_to_an_override(tmp_path: Path) -> None:
    train = write_yaml(tmp_path / "t.yaml", "optimizer: {weight_decay: '${train.optimizer.lr}'}\n")
    assert _resolve(train)["train"].config["optimizer"]["weight_decay"] == 0.001
    overridden = _resolve(train, "train.optimizer.lr=1e-5")["train"]
    assert overridden.config["optimizer"]["weight_decay"] == 1e-5
    flat = write_yaml(tmp_path / "f.yaml", "optimizer: {lr: 1e-5, weight_decay: 1e-5}\n")
    assert overridden.digest == _resolve(flat)["train"].digest


def test_reference_inside_a_string(tmp_path: Path) -> None:
    train = write_yaml(tmp_path / "t.yaml", "name: run-${train.epochs}-${train.optimizer.name}\n")
    assert _resolve(train)["train"].name == "run-20-adam"


def test_changing_a_referenced_upstream_value_changes_the_dependant(tmp_path: Path) -> None:
    train = write_yaml(tmp_path / "t.yaml", "seed: ${model.seed}\n")
    a = _resolve(train, "model.seed=1")["train"]
    b = _resolve(train, "model.seed=2")["train"]
    assert (a.config["seed"], b.config["seed"]) == (1, 2)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            "epochs: ${train.epoch}\n", "does not exist.*did you mean 'epochs'", id="unknown"
        ),
        pytest.param("seed: ${eval.batch_size}\n", "resolved after the train config", id="later"),
        pytest.param(
            "epochs: ${train.batch_size}\nbatch_size: ${train.epochs}\n", "cycle", id="cycle"
        ),
        pytest.param("epochs: ${epochs}\n", "is not a reference", id="no-section"),
        pytest.param("name: a${train.epochs\n", "unclosed", id="unclosed"),
        pytest.param(
            "name: x${train.optimizer}\n", "cannot be part of a longer string", id="mapping"
        ),
    ],
)
def test_bad_references_are_one_config_error(tmp_path: Path, text: str, match: str) -> None:
    train = write_yaml(tmp_path / "t.yaml", text)
    with pytest.raises(ConfigError, match=match) as info:
        _resolve(train)
    assert str(train) in str(info.value) and "\n" not in str(info.value)

"""Config resolution: defaults, overrides, validation messages and content identity."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tasks.config.resolve import format_overrides, parse_overrides, resolve_section
from tasks.errors import ConfigError, RegistryError
from tasks.registry import names
from tests.support import CONFIGS, write_yaml


def test_builtin_defaults_equal_the_shipped_default_files() -> None:
    for section in ("train", "eval"):
        builtin = resolve_section(section, None)
        shipped = resolve_section(section, CONFIGS / section / "default.yaml")
        assert builtin.digest == shipped.digest, section
        assert builtin.name == "default" and shipped.name == "default"


def test_builder_defaults_are_filled_in(tmp_path: Path) -> None:
    short = write_yaml(tmp_path / "m.yaml", "framework: torch\nbuilder: mlp\n")
    resolved = resolve_section("model", short)
    assert resolved.config["params"] == {"activation": "relu", "dropout": 0.1, "hidden": [128, 64]}
    explicit = write_yaml(
        tmp_path / "n.yaml",
        "builder: mlp\nframework: torch\nparams: {hidden: [128, 64], dropout: 0.1}\n",
    )
    assert resolve_section("model", explicit).digest == resolved.digest


def test_changing_a_value_changes_the_digest(tmp_path: Path) -> None:
    a = write_yaml(tmp_path / "a.yaml", "epochs: 5\n")
    b = write_yaml(tmp_path / "b.yaml", "epochs: 6\n")
    assert resolve_section("train", a).digest != resolve_section("train", b).digest


def test_name_key_names_the_directory_but_not_the_identity(tmp_path: Path) -> None:
    a = write_yaml(tmp_path / "a.yaml", "epochs: 5\nname: short-run\n")
    b = write_yaml(tmp_path / "b.yaml", "epochs: 5\n")
    ra, rb = resolve_section("train", a), resolve_section("train", b)
    assert (ra.name, rb.name) == ("short-run", "b")
    assert ra.digest == rb.digest


def test_overrides_parse_yaml_values_and_round_trip() -> None:
    parsed = parse_overrides("train.epochs=3 model.params.hidden=[64,32] 'data.params.noise=0.5'")
    assert parsed["train"] == {"epochs": 3}
    assert parsed["model"] == {"params.hidden": [64, 32]}
    text = format_overrides(parsed, ("data", "model", "train"))
    assert parse_overrides(text) == parsed


def test_override_changes_the_resolved_config(tmp_path: Path) -> None:
    resolved = resolve_section(
        "model", CONFIGS / "model" / "mlp_torch.yaml", {"params.hidden": [8]}
    )
    assert resolved.config["params"]["hidden"] == [8]
    assert resolved.digest != resolve_section("model", CONFIGS / "model" / "mlp_torch.yaml").digest


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("epochs=3", "section.key=value", id="no-section"),
        pytest.param("optim.lr=1", "names section 'optim'", id="bad-section"),
        pytest.param("train.epochs", "section.key=value", id="no-value"),
    ],
)
def test_malformed_overrides_are_rejected(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_overrides(text)


def test_override_of_missing_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="does not exist.*did you mean 'epochs'"):
        resolve_section("train", None, {"epoch": 3})


def test_validation_names_file_key_and_fix(tmp_path: Path) -> None:
    bad = write_yaml(tmp_path / "t.yaml", "epochs: 0\nbatch_sise: 3\n")
    with pytest.raises(ConfigError) as info:
        resolve_section("train", bad)
    message = str(info.value)
    assert str(bad) in message
    assert "key 'epochs'" in message and "greater than 0" in message
    assert "unknown key 'batch_sise'" in message and "did you mean 'batch_size'" in message


def test_unregistered_builder_lists_the_registered_ones(tmp_path: Path) -> None:
    bad = write_yaml(tmp_path / "m.yaml", "framework: torch\nbuilder: 'os:system'\n")
    with pytest.raises(RegistryError) as info:
        resolve_section("model", bad)
    message = str(info.value)
    assert "'os:system' is not registered" in message
    # Every registered name, whatever other tests of this process registered as well.
    registered = names("model", "torch")
    assert {"cnn", "linear", "mlp"} <= set(registered)
    assert f"Registered: {', '.join(registered)}." in message


def test_unknown_builder_param_suggests_the_close_one(tmp_path: Path) -> None:
    bad = write_yaml(
        tmp_path / "m.yaml", "framework: torch\nbuilder: mlp\nparams: {dropuot: 0.2}\n"
    )
    with pytest.raises(ConfigError, match="params.dropuot.*did you mean 'dropout'"):
        resolve_section("model", bad)


def test_user_data_file_content_is_part_of_the_identity(tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((10, 2), np.float32), y=np.zeros(10, np.int64))
    cfg = write_yaml(tmp_path / "data.yaml", "loader: npz\nparams: {path: d.npz}\n")
    first = resolve_section("data", cfg)
    assert first.config["params"]["path"] == str(data.resolve())
    np.savez(data, x=np.ones((10, 2), np.float32), y=np.zeros(10, np.int64))
    assert resolve_section("data", cfg).digest != first.digest


def test_missing_data_file_is_reported_with_the_key(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "data.yaml", "loader: npz\nparams: {path: nowhere.npz}\n")
    with pytest.raises(ConfigError, match="key 'params.path'.*does not exist"):
        resolve_section("data", cfg)


def test_split_must_leave_training_rows(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "d.yaml", "loader: moons\nsplit: {val: 0.5, test: 0.5}\n")
    with pytest.raises(ConfigError, match="val \\+ test must be below 1"):
        resolve_section("data", cfg)


def test_the_validated_file_memo_follows_the_file_and_is_never_shared(tmp_path: Path) -> None:
    """Resolutions with overrides start from the file's validated content, kept per file
    version: an edit is seen, and one experiment's overrides never leak into another's."""
    path = write_yaml(tmp_path / "train.yaml", "epochs: 2\n")
    first = resolve_section("train", path, {"seed": 1})
    assert (first.config["epochs"], first.config["seed"]) == (2, 1)
    second = resolve_section("train", path, {"seed": 2})
    assert (second.config["seed"], first.config["seed"]) == (2, 1)
    time.sleep(0.05)  # past the file system's timestamp tick
    path.write_text("epochs: 3\n", encoding="utf-8")  # same size, written in place
    third = resolve_section("train", path, {"seed": 1})
    assert third.config["epochs"] == 3
    assert third.digest != first.digest

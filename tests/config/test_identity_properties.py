"""Property tests of config identity: the hash follows content, and names stay safe.

config → resolved config → digest must not change with key order, YAML formatting,
comments or explicitly written defaults; any change of a value must change it; and the
directory names derived from ``name:`` keys or file stems only ever use ``[A-Za-z0-9._-]``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.config.resolve import resolve_section
from tasks.errors import ConfigError
from tasks.store.layout import child_dir

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")
PROFILE = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
DEFAULTS = {"epochs": 20, "batch_size": 64, "seed": 0, "loss": "cross_entropy", "shuffle": True}

train_configs = st.fixed_dictionaries(
    {},
    optional={
        "epochs": st.integers(1, 500),
        "batch_size": st.integers(1, 4096),
        "seed": st.integers(0, 2**32 - 1),
        "loss": st.sampled_from(["cross_entropy", "mse"]),
        "shuffle": st.booleans(),
        "optimizer": st.fixed_dictionaries(
            {},
            optional={
                "name": st.sampled_from(["adam", "sgd", "adamw", "rmsprop"]),
                "lr": st.floats(1e-6, 1.0, allow_nan=False),
                "momentum": st.floats(0.0, 0.99, allow_nan=False),
            },
        ),
    },
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _digest(tmp: Path, name: str, text: str, section: str = "train") -> str:
    return resolve_section(section, _write(tmp / f"{name}.yaml", text)).digest


def _styled(config: dict[str, Any], flow: bool, reverse: bool) -> str:
    items = sorted(config.items(), reverse=reverse)
    body = yaml.safe_dump(dict(items), sort_keys=False, default_flow_style=flow)
    return "# a comment\n\n" + body.replace("\n", "   # trailing\n", 1) if not flow else body


@PROFILE
@given(config=train_configs)
def test_digest_ignores_order_formatting_comments(tmp_path: Path, config: dict[str, Any]) -> None:
    """Key order, flow/block style and comments never change the digest."""
    a = _digest(tmp_path, "a", _styled(config, flow=False, reverse=False) or "{}\n")
    b = _digest(tmp_path, "b", _styled(config, flow=True, reverse=True))
    assert a == b


@PROFILE
@given(config=train_configs)
def test_digest_ignores_explicit_defaults(tmp_path: Path, config: dict[str, Any]) -> None:
    """Writing a default value out gives the same experiment as leaving it out."""
    explicit = {**DEFAULTS, **config}
    assert _digest(tmp_path, "a", yaml.safe_dump(config) if config else "epochs: 20\n") == _digest(
        tmp_path, "b", yaml.safe_dump(explicit)
    )


@PROFILE
@given(config=train_configs, epochs=st.integers(1, 500), seed=st.integers(0, 10**6))
def test_different_values_give_different_digests(
    tmp_path: Path, config: dict[str, Any], epochs: int, seed: int
) -> None:
    """Changing any value changes the digest."""
    base = {**config, "epochs": epochs, "seed": seed}
    digest = _digest(tmp_path, "a", yaml.safe_dump(base))
    assert digest != _digest(tmp_path, "b", yaml.safe_dump({**base, "epochs": epochs + 1}))
    assert digest != _digest(tmp_path, "c", yaml.safe_dump({**base, "seed": seed + 1}))


hostile_names = st.one_of(
    st.text(min_size=1, max_size=80),
    st.sampled_from(["..", "../../evil", "/etc/passwd", "a/b", ".hidden", "-x", "a\x00b", "~"]),
)


def _assert_safe_dir(parent: Path, name: str, digest: str) -> None:
    directory = child_dir(parent, name, digest)
    assert directory.parent == parent
    assert SAFE.match(directory.name), directory.name
    assert not directory.name.startswith(".")  # never "..", never hidden
    assert "/" not in directory.name and directory.name not in (".", "..")


@PROFILE
@given(name=hostile_names)
def test_name_key_is_safe_or_rejected(tmp_path: Path, name: str) -> None:
    """A hostile ``name:`` is refused with a ConfigError or yields a safe directory name."""
    text = yaml.safe_dump({"name": name, "epochs": 1})
    try:
        resolved = resolve_section("train", _write(tmp_path / "t.yaml", text))
    except ConfigError:
        return
    assert "/" not in resolved.name and not resolved.name.startswith(".")
    _assert_safe_dir(tmp_path, resolved.name, resolved.digest)


@PROFILE
@given(stem=st.text(min_size=1, max_size=60).filter(lambda s: "/" not in s and "\x00" not in s))
def test_file_stem_gives_a_safe_directory_name(tmp_path: Path, stem: str) -> None:
    """Whatever a config file is called, its directory name is made of safe characters."""
    try:
        path = _write(tmp_path / f"{stem}.yaml", "epochs: 2\n")
    except OSError:
        pytest.skip("the file system refuses that name")
    resolved = resolve_section("train", path)
    assert SAFE.match(resolved.name) and not resolved.name.startswith("."), resolved.name
    assert resolved.name not in (".", "..")
    _assert_safe_dir(tmp_path, resolved.name, resolved.digest)

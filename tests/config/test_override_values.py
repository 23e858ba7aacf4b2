"""Override values keep their YAML type in every task: parse → format → parse is identity.

BuildModel and Train receive the overrides as canonical text (``format_overrides``) while
the task the user named parses what was typed; a sweep passes its values the same way.
Any value whose type changes on that trip gives two steps two different configs.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.config.resolve import format_overrides, parse_overrides, resolve_sections
from tasks.config.sweep import SweepExperiment, expand_sweep, load_sweep_config
from tasks.config.yamlio import format_yaml_value, load_yaml_file, parse_yaml_value
from tasks.errors import ConfigError
from tests.support import CONFIGS, write_yaml

PROFILE = settings(max_examples=150, deadline=None)
LEVELS = ("data", "model", "train", "eval")
PATHS = {
    "data": str(CONFIGS / "data" / "moons.yaml"),
    "model": str(CONFIGS / "model" / "mlp_torch.yaml"),
    "train": None,
    "eval": None,
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**130), max_value=2**130),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    # Strings that look like other types are where YAML 1.1 and 1.2 disagree.
    st.sampled_from(
        ["1e-05", "1e5", ".nan", "-.inf", "yes", "off", "~", "0x1F", "1:30", "2020-01-01"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
name_part = st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)
keys = st.tuples(st.sampled_from(LEVELS), st.lists(name_part, min_size=1, max_size=3))


def canonical(value: Any) -> str:
    """Type-exact identity: 1 != 1.0 != True, -0.0 != 0.0, nan == nan."""
    return json.dumps([value, _types(value)], sort_keys=True, allow_nan=True)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


@PROFILE
@given(value=values)
def test_a_value_survives_format_and_parse(value: Any) -> None:
    text = format_yaml_value(value)
    assert "\n" not in text or isinstance(value, (str, list, dict))
    assert canonical(parse_yaml_value(text, where="test")) == canonical(value)


@PROFILE
@given(assignments=st.lists(st.tuples(keys, values), min_size=1, max_size=5))
def test_override_text_round_trips(assignments: list[tuple[Any, Any]]) -> None:
    overrides: dict[str, dict[str, Any]] = {level: {} for level in LEVELS}
    for (section, parts), value in assignments:
        overrides[section][".".join(parts)] = value
    text = format_overrides(overrides, LEVELS)
    parsed = parse_overrides(text)
    assert canonical(parsed) == canonical(overrides)
    assert format_overrides(parsed, LEVELS) == text  # canonical text is a fixed point


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        pytest.param("0.00001", 1e-05, id="dotted"),
        pytest.param("1e-5", 1e-05, id="exponent-no-dot"),
        pytest.param("1E+3", 1000.0, id="upper-exponent"),
        pytest.param("1.5e3", 1500.0, id="unsigned-exponent"),
        pytest.param("-2", -2, id="negative-int"),
        pytest.param("-0.5", -0.5, id="negative-float"),
        pytest.param("123456789012345678901234567890", 123456789012345678901234567890, id="big"),
        pytest.param(".inf", math.inf, id="inf"),
        # Pairs are split like a shell line: YAML quotes go inside a second pair of quotes.
        pytest.param("\"'1e-5'\"", "1e-5", id="quoted-stays-text"),
        pytest.param("2020-01-01", "2020-01-01", id="date-is-text"),
    ],
)
def test_typed_values_have_the_yaml_type(typed: str, expected: Any) -> None:
    parsed = parse_overrides(f"model.params.x={typed}")["model"]["params.x"]
    assert type(parsed) is type(expected) and parsed == expected
    again = parse_overrides(format_overrides({"model": {"params.x": parsed}}, ("model",)))
    assert canonical(again["model"]["params.x"]) == canonical(expected)


def test_nan_survives_the_trip() -> None:
    parsed = parse_overrides(format_overrides(parse_overrides("model.params.x=.nan"), LEVELS))
    assert math.isnan(parsed["model"]["params.x"])


def test_config_files_type_scalars_like_overrides(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", "a: 1e-5\nb: 1.0e5\nc: 2020-01-01\nd: .nan\n")
    data = load_yaml_file(path)
    assert data["a"] == 1e-5 and data["b"] == 1e5 and data["c"] == "2020-01-01"
    assert math.isnan(data["d"])


@pytest.mark.parametrize("tagged", ["!!binary aGk=", "!!set {a: null}", "!!timestamp 2020-01-01"])
def test_tags_that_build_other_types_are_refused(tagged: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configs hold only strings"):
        parse_overrides(shlex.quote(f"model.params.x={tagged}"))
    with pytest.raises(ConfigError, match="key 'x' holds a"):
        load_yaml_file(write_yaml(tmp_path / "t.yaml", f"x: {tagged}\n"))


def test_bad_override_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be dotted names"):
        parse_overrides("train.optimizer..lr=1")


def _spec_digests(overrides_text: str) -> dict[str, str]:
    sections = resolve_sections(LEVELS, PATHS, parse_overrides(overrides_text))
    return {level: sections[level].digest for level in LEVELS}


def _upstream_digests(overrides_text: str) -> dict[str, str]:
    """Digests as each upstream step computes them: from its share of the canonical text."""
    out = {}
    for i, level in enumerate(LEVELS):
        text = format_overrides(parse_overrides(overrides_text), LEVELS[: i + 1])
        sections = resolve_sections(LEVELS[: i + 1], PATHS, parse_overrides(text))
        out[level] = sections[level].digest
    return out


float_values = st.one_of(
    st.floats(min_value=1e-12, max_value=0.99, allow_nan=False),
    st.sampled_from([1e-5, 1e-05, 0.00001, 3e-4, 0.5]),
)


@PROFILE
@given(lr=float_values, dropout=float_values, noise=float_values, seed=st.integers(0, 2**32 - 1))
def test_typed_override_equals_sweep_value_and_every_step_agrees(
    lr: float, dropout: float, noise: float, seed: int
) -> None:
    typed = (
        f"train.optimizer.lr={lr!r} model.params.dropout={dropout!r} "
        f"data.params.noise={noise!r} train.seed={seed}"
    )
    sweep = SweepExperiment(
        PATHS["data"],
        PATHS["model"],
        None,
        None,
        (
            ("train.optimizer.lr", lr),
            ("model.params.dropout", dropout),
            ("data.params.noise", noise),
            ("train.seed", seed),
        ),
    )
    by_hand = _spec_digests(typed)
    assert _spec_digests(sweep.overrides) == by_hand
    assert _upstream_digests(typed) == by_hand
    sections = resolve_sections(LEVELS, PATHS, parse_overrides(typed))
    # What the loader, the builder and the optimizer receive: floats, not strings.
    assert type(sections["data"].config["params"]["noise"]) is float
    assert sections["data"].config["params"]["noise"] == noise
    assert type(sections["model"].config["params"]["dropout"]) is float
    assert sections["train"].config["optimizer"]["lr"] == lr


def test_sweep_file_values_equal_typed_overrides(tmp_path: Path) -> None:
    sweep = write_yaml(
        tmp_path / "s.yaml",
        f"data: [{PATHS['data']}]\nmodel: [{PATHS['model']}]\n"
        "grid: {train.optimizer.lr: [1e-5, 0.00003], model.params.dropout: [1e-1]}\n",
    )
    experiments = expand_sweep(load_sweep_config(sweep), sweep)
    got = sorted(tuple(_spec_digests(e.overrides).values()) for e in experiments)
    typed = sorted(
        tuple(_spec_digests(f"train.optimizer.lr={lr} model.params.dropout=0.1").values())
        for lr in ("1e-5", "3e-5")
    )
    assert got == typed

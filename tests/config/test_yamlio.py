"""Safe YAML reading: no code execution, capped aliases, clear positions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.config.yamlio import MAX_ALIASES, dump_yaml, load_yaml_file, parse_yaml_value
from tasks.errors import ConfigError
from tests.support import write_yaml


def test_python_tags_are_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    bad = write_yaml(
        tmp_path / "x.yaml", f"a: !!python/object/apply:os.system ['touch {sentinel}']\n"
    )
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml_file(bad)
    assert not sentinel.exists()


def test_billion_laughs_is_capped(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    bad = write_yaml(tmp_path / "lol.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=f"more than {MAX_ALIASES} aliases"):
        load_yaml_file(bad)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("", "is empty", id="empty"),
        pytest.param("- 1\n- 2\n", "must hold a YAML mapping", id="list"),
        pytest.param("a: 1\n b: 2\n", "line 2, column", id="syntax"),
    ],
)
def test_unusable_files_get_one_clear_error(tmp_path: Path, text: str, match: str) -> None:
    bad = write_yaml(tmp_path / "x.yaml", text)
    with pytest.raises(ConfigError, match=match):
        load_yaml_file(bad)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_yaml_file(tmp_path / "nope.yaml")


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["1e-05", ".nan", "yes", "~", "0x1F", "1:30", "2020-01-01", "- a", "a: b"]),
)
_configs = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.text(max_size=8), _configs, max_size=6))
def test_stored_config_text_is_pyyamls_and_reads_back(data: dict[str, Any]) -> None:
    """What dump_yaml stores (libyaml's emitter) is ASCII and reads back as the same data
    (NaN compared as NaN), for any plain config: line-break look-alikes (NEL, U+2028),
    strings that look like numbers, dates or nulls, empty keys."""
    text = dump_yaml(data)
    assert text.isascii()
    back = parse_yaml_value(text, where="test") if data else {}
    assert json.dumps(back, sort_keys=True) == json.dumps(data, sort_keys=True)


def test_a_same_size_edit_with_its_mtime_put_back_is_read_again(tmp_path: Path) -> None:
    import os

    path = write_yaml(tmp_path / "train.yaml", "epochs: 5\nbatch_size: 32\n")
    assert load_yaml_file(path, what="train config")["epochs"] == 5  # memoised now
    before = path.stat()
    path.write_text("epochs: 7\nbatch_size: 16\n")  # same size, in place
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert load_yaml_file(path, what="train config") == {"epochs": 7, "batch_size": 16}

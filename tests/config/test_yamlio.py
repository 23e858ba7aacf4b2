"""Safe YAML reading: no code execution, capped aliases, clear positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.config.yamlio import MAX_ALIASES, load_yaml_file
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

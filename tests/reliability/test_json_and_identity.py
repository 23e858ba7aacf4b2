"""Every JSON file Forge writes is strict JSON; a step's directory is found by its content."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.store.jsonio import dumps_json
from tasks.store.layout import _claimed, child_dir, claim_dir

TASKS = Path(__file__).resolve().parents[2] / "tasks"

_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


def _expected(value: Any) -> Any:
    """``value`` as strict JSON reads it back under Forge's convention (non-finite → null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _expected(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_expected(v) for v in value]
    return value


def _strict_loads(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_dumps_json_is_strict_and_round_trips(value: Any) -> None:
    assert _strict_loads(dumps_json(value, indent=2)) == _expected(value)


def test_numpy_values_and_non_finite_floats() -> None:
    record = {"loss": float("nan"), "best": np.float32("inf"), "arr": np.array([1.0, -np.inf])}
    assert _strict_loads(dumps_json(record)) == {"loss": None, "best": None, "arr": [1.0, None]}


def test_no_module_of_tasks_writes_json_any_other_way() -> None:
    """Only the helper itself, config hashing and override text (YAML, not a JSON file)
    call ``json.dumps``; every JSON file and ``--json`` output goes through ``dumps_json``."""
    exempt = {"store/jsonio.py", "config/resolve.py"}
    offenders = [
        str(p.relative_to(TASKS))
        for p in TASKS.rglob("*.py")
        if p.relative_to(TASKS).as_posix() not in exempt and "json.dumps(" in p.read_text()
    ]
    assert offenders == []


def test_child_dir_finds_the_same_digest_under_another_name(tmp_path: Path) -> None:
    digest = "ab" * 32
    first = child_dir(tmp_path, "default", digest)
    assert first == tmp_path / f"default-{digest[:8]}"
    claim_dir(first, digest)
    _claimed.clear()
    assert child_dir(tmp_path, "copy", digest) == first
    # Same prefix, other content: not reused, and the name's own directory is used.
    other = "ab" * 4 + "cd" * 28
    claim_dir(tmp_path / f"zzz-{other[:8]}x", "ab" * 4 + "ef" * 28)  # matches the glob only
    assert child_dir(tmp_path, "copy", other) == tmp_path / f"copy-{other[:8]}"
    _claimed.clear()

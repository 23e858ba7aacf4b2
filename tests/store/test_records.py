"""Typed records: tolerant readers report damage as a value; writers emit strict JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.errors import CorruptArtifactError
from tasks.store.names import BEST_RECORD, EVAL_METRICS_FILE, MODEL_DIR, RUN_FILE
from tasks.store.records import (
    BestRecord,
    EvalRecord,
    RunRecord,
    json_text,
    read_json_object,
    write_json,
)

GOOD_RUN = {
    "status": "done",
    "start": "2026-01-01T00:00:00+00:00",
    "duration_s": 1.5,
    "host": "h",
    "framework": "torch",
    "seed": 0,
    "git": {"commit": "abc", "dirty": False},
    "code": {"builder": {"name": "mlp", "qualname": "m.mlp", "fingerprint": "f"}},
    "digests": {"data": "d", "model": "m", "train": "t"},
    "export": {"ok": True, "file": "model/model.pt2", "checkpoint": "best"},
}


def test_a_good_run_record_round_trips(tmp_path: Path) -> None:
    RunRecord.write(tmp_path, GOOD_RUN)
    run = RunRecord.read(tmp_path)
    assert run.ok and run.damage is None
    assert run.status == "done" and run.duration_s == 1.5 and run.seed == 0
    assert run.code["builder"]["name"] == "mlp"
    assert run.export.ok and run.export.file == "model/model.pt2"
    assert run.raw == GOOD_RUN


@pytest.mark.parametrize(
    ("content", "why"),
    [
        pytest.param(b"", "not valid JSON", id="empty"),
        pytest.param(b"{not json", "not valid JSON", id="torn"),
        pytest.param(b"\xff\xfe\x00garbage", "not UTF-8", id="binary"),
        pytest.param(b"[1, 2, 3]", "holds a list", id="list"),
        pytest.param(b'{"status": 3}', "'status' is a int", id="wrong-scalar-type"),
        pytest.param(b'{"code": ["builder"]}', "'code' is a list", id="list-for-mapping"),
        pytest.param(b'{"export": "yes"}', "'export' is a str", id="str-for-mapping"),
        pytest.param(b'{"seed": true}', "'seed' is a bool", id="bool-for-int"),
    ],
)
def test_a_damaged_run_record_is_a_value_not_an_exception(
    tmp_path: Path, content: bytes, why: str
) -> None:
    (tmp_path / RUN_FILE).write_bytes(content)
    run = RunRecord.read(tmp_path)
    assert run.damage is not None and why in run.damage
    with pytest.raises(CorruptArtifactError, match="damaged"):
        run.require()


def test_a_missing_record_says_missing(tmp_path: Path) -> None:
    run = RunRecord.read(tmp_path)
    assert run.missing and not run.ok
    assert BestRecord.read(tmp_path).missing
    assert EvalRecord.read(tmp_path).missing


def test_eval_record_reads_metrics_and_flags_non_numbers(tmp_path: Path) -> None:
    record = {"split": "test", "checkpoint": 3, "rows": 10, "metrics": {"acc": 0.5, "x": "hi"}}
    (tmp_path / EVAL_METRICS_FILE).write_text(json.dumps(record))
    ev = EvalRecord.read(tmp_path)
    assert ev.split == "test" and ev.checkpoint == 3 and ev.rows == 10
    assert ev.metrics == {"acc": 0.5}
    assert ev.damage is not None and "metric 'x' is a str" in ev.damage


def test_best_record_round_trips_and_stores_nan_as_null(tmp_path: Path) -> None:
    BestRecord(epoch=2, monitor="val_loss", mode="min", value=float("nan")).write(tmp_path)
    text = (tmp_path / MODEL_DIR / BEST_RECORD).read_text()
    assert "NaN" not in text and json.loads(text)["value"] is None
    best = BestRecord.read(tmp_path)
    assert best.ok and best.epoch == 2 and best.monitor == "val_loss" and best.value is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=10,
)


@given(value=json_values)
def test_every_value_is_written_as_strict_json(value: object) -> None:
    text = json_text(value)

    def no_constants(name: str) -> object:
        raise AssertionError(f"bare {name} in {text!r}")

    decoded = json.loads(text, parse_constant=no_constants)

    def same(a: object, b: object) -> bool:
        if isinstance(a, float) and not math.isfinite(a):
            return b is None
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list | tuple):
            return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
        return a == b

    assert same(value, decoded)


def test_write_json_is_readable_back(tmp_path: Path) -> None:
    write_json(tmp_path / "x.json", {"a": [1, float("inf")]})
    assert read_json_object(tmp_path / "x.json") == ({"a": [1, None]}, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"matrix": [[3, 1], [0, 4]]}', [[3, 1], [0, 4]]),
        ('{"matrix": [[3, 1], [0]]}', None),  # not square
        ('{"matrix": [[3, -1], [0, 4]]}', None),  # not counts
        ('{"matrix": [[true, 1], [0, 4]]}', None),
        ('{"matrix": [[3, 1], [0, 4]', None),  # torn
        ("[]", None),
    ],
)
def test_confusion_reader_is_tolerant(tmp_path: Path, text: str, expected: object) -> None:
    from tasks.store.names import CONFUSION_FILE
    from tasks.store.records import read_confusion

    assert read_confusion(tmp_path) is None  # absent
    (tmp_path / CONFUSION_FILE).write_text(text)
    assert read_confusion(tmp_path) == expected

"""annotations.json and environment.txt: tolerant readers, atomic writers, tag rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import ConfigError
from tasks.store.annotations import MAX_NOTE, annotate, check_tags
from tasks.store.names import ANNOTATIONS_FILE, ENVIRONMENT_FILE
from tasks.store.packages import freeze_text, read_packages, write_packages
from tasks.store.records import AnnotationRecord


@pytest.mark.parametrize(
    ("text", "damage"),
    [
        ('{"tags": "baseline"}', "'tags' is a str, not a list"),
        ('{"tags": ["a", 3]}', "'tags' holds entries that are not strings"),
        ('{"note": 5}', "'note' is a int"),
        ("[1, 2]", "holds a list, not a JSON object"),
        ("{", "not valid JSON"),
    ],
)
def test_a_damaged_annotation_record_is_a_value(tmp_path: Path, text: str, damage: str) -> None:
    (tmp_path / ANNOTATIONS_FILE).write_text(text, encoding="utf-8")
    record = AnnotationRecord.read(tmp_path)
    assert record.damage is not None and damage in record.damage
    assert record.damage.startswith(ANNOTATIONS_FILE)


def test_annotations_round_trip_and_missing_means_empty(tmp_path: Path) -> None:
    empty = AnnotationRecord.read(tmp_path)
    assert empty.missing and empty.tags == () and empty.note is None
    annotate(tmp_path, add=["b", "a", "b"], note="n")
    annotate(tmp_path, add=["c"], remove=["a"])
    record = AnnotationRecord.read(tmp_path)
    assert record.ok and record.tags == ("b", "c") and record.note == "n"
    annotate(tmp_path, note="")
    assert AnnotationRecord.read(tmp_path).note is None
    with pytest.raises(ConfigError, match="at most"):
        annotate(tmp_path, note="x" * (MAX_NOTE + 1))


def test_tag_rules() -> None:
    assert check_tags(["a", "lr-sweep:v2", "A.b/c+d_e", "a"]) == ["a", "lr-sweep:v2", "A.b/c+d_e"]
    for bad in ["", " a", "a b", "a,b", "a=b", ".hidden", "x" * 65, "ü"]:
        with pytest.raises(ConfigError, match=r"a tag is 1-64 characters"):
            check_tags([bad])


def test_environment_txt_round_trips_in_pip_freeze_format(tmp_path: Path) -> None:
    assert read_packages(tmp_path) == ({}, "missing")
    packages = {"numpy": "2.1.0", "Babel": "2.9", "absl-py": "1.0"}
    write_packages(tmp_path, packages)
    text = (tmp_path / ENVIRONMENT_FILE).read_text(encoding="utf-8")
    assert text == "absl-py==1.0\nBabel==2.9\nnumpy==2.1.0\n" == freeze_text(packages)
    assert read_packages(tmp_path) == (packages, None)
    (tmp_path / ENVIRONMENT_FILE).write_text("# comment\n\nfoo==1\nbar\n", encoding="utf-8")
    assert read_packages(tmp_path) == ({"foo": "1", "bar": ""}, None)
    (tmp_path / ENVIRONMENT_FILE).write_bytes(b"\xff\xfe")
    packages_read, why = read_packages(tmp_path)
    assert packages_read == {} and why is not None and ENVIRONMENT_FILE in why

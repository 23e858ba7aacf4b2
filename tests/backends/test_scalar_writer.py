"""The TensorBoard writer both backends use: one event file per run, read back by
TensorBoard itself, written without a thread or a framework, never failing training."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tasks.backends.base import ScalarWriter
from tests.support import REPO, last_line_printed


def _scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir))
    accumulator.Reload()
    return [(e.step, round(e.value, 6)) for e in accumulator.Scalars(tag)]


def test_each_writer_has_its_own_file_and_tensorboard_reads_every_step(tmp_path: Path) -> None:
    first, second = ScalarWriter(tmp_path / "a"), ScalarWriter(tmp_path / "b")
    for step in (1, 2, 3):
        first.add_scalars(step, {"loss": 1.0 / step, "lr": 0.1}, flush=step == 1)
        second.add_scalars(step, {"loss": 2.0 / step})
    first.close()
    second.close()
    assert first.path != second.path and first.path.name.startswith("events.out.tfevents.")
    assert _scalars(tmp_path / "a", "loss") == [(1, 1.0), (2, 0.5), (3, 0.333333)]
    assert _scalars(tmp_path / "a", "lr") == [(1, 0.1), (2, 0.1), (3, 0.1)]
    assert _scalars(tmp_path / "b", "loss") == [(1, 2.0), (2, 1.0), (3, 0.666667)]


class _FullDisk:
    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        pass


def test_a_failed_write_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tensorboard.summary.writer.record_writer import RecordWriter

    writer = ScalarWriter(tmp_path)
    writer._fh = _FullDisk()
    writer._records = RecordWriter(writer._fh)
    with caplog.at_level(logging.WARNING, logger="forge"):
        for step in (1, 2, 3):
            writer.add_scalars(step, {"loss": 1.0})
        writer.close()
    warnings = [r for r in caplog.records if "TensorBoard events not written" in r.message]
    assert len(warnings) == 1 and "No space left" in warnings[0].message
    # The control: the same file object raises when written to directly.
    with pytest.raises(OSError, match="No space left"):
        _FullDisk().write(b"x")


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_writing_scalars_imports_no_framework(framework: str, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\nfrom tasks.backends.base import ScalarWriter\n"
        f"w = ScalarWriter(Path({str(tmp_path)!r}))\nw.add_scalars(1, {{'loss': 1.0}})\n"
        "w.close()\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    assert last_line_printed(code, REPO) == "[]"

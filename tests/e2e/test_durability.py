"""Every file a finished step leaves is synced to disk before its marker says it is done
(so a power loss never leaves a step marked complete with a file missing or torn)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support import CONFIGS

_TMP = re.compile(r"^\.tmp-\d+-[0-9a-f]{8}-")


def test_every_file_of_a_finished_step_is_synced_before_its_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import luigi

    import pipelines

    synced: list[Path] = []
    real = os.fsync

    def spy(fd: int) -> None:
        real(fd)
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        synced.append(path.with_name(_TMP.sub("", path.name)))  # a temporary: its final name

    monkeypatch.setattr(os, "fsync", spy)
    results = tmp_path / "results"
    task = pipelines.Evaluate(
        data_config=str(CONFIGS / "data" / "moons.yaml"),
        model_config=str(CONFIGS / "model" / "mlp_torch.yaml"),
        overrides="train.epochs=2 train.batch_size=128",
        results_dir=str(results),
    )
    assert luigi.build([task], local_scheduler=True)
    markers = sorted(results.rglob("_SUCCESS"))
    assert len(markers) == 4  # data, model, train, evaluation
    for marker in markers:
        step = marker.parent
        marked = synced.index(marker)
        before = set(synced[:marked])
        nested = {p.parent for p in markers if p != marker and step in p.parents}
        for path in step.rglob("*"):
            if path == marker or any(
                n == path or n in path.parents or path in n.parents for n in nested
            ):
                continue  # the marker itself; another (later) step's folder
            if path.name in {".lock"}:
                continue  # the step's lock file: holds no data
            assert path in before, f"{path.relative_to(results)} not synced before {marker}"

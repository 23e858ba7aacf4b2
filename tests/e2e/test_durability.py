"""Every file a finished step leaves is synced to disk before its marker says it is done
(so a power loss never leaves a step marked complete with a file missing or torn), with
either way of syncing, for one experiment and for a sweep's chain of steps."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.store import atomic
from tests.support import CONFIGS, write_yaml

_TMP = re.compile(r"^\.tmp-\d+-[0-9a-f]{8}-")

Identity = tuple[int, int, int]  # inode, size, modification time: one version of a file


def _identity(path: Path) -> Identity | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class DurabilityLog:
    """What was durable after each sync: an ``fsync`` makes one file (the version it had
    then) durable, a ``syncfs`` every file that existed under ``root`` then."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.events: list[dict[Path, Identity | None]] = []

    def fsynced(self, fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        final = path.with_name(_TMP.sub("", path.name))  # a temporary: its final name
        self.events.append({final: _identity(path)})

    def whole(self, fd: int) -> None:
        snapshot: dict[Path, Identity | None] = {}
        if self.root.exists():
            for base, dirs, files in os.walk(self.root):
                for name in (*dirs, *files):
                    path = Path(base) / name
                    snapshot[path.with_name(_TMP.sub("", name))] = _identity(path)
        self.events.append(snapshot)

    def first_durable(self, path: Path) -> int | None:
        """The first sync after which ``path`` was durable as it is now (a folder: at all)."""
        final = _identity(path)
        for index, event in enumerate(self.events):
            if path in event and (path.is_dir() or event[path] == final):
                return index
        return None


@pytest.fixture(params=["files", "filesystem"])
def durability(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DurabilityLog]:
    import luigi

    method = str(request.param)
    if method == "filesystem" and atomic._libc_syncfs() is None:
        pytest.skip("syncfs (Linux 5.8+) is not available here")
    log = DurabilityLog(tmp_path / "results")
    real_fsync, real_syncfs = os.fsync, atomic._syncfs

    def fsync(fd: int) -> None:
        real_fsync(fd)
        log.fsynced(fd)

    def syncfs(fd: int) -> None:
        real_syncfs(fd)
        log.whole(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(atomic, "_syncfs", syncfs)
    config = luigi.configuration.get_config()
    config.set("forge", "sync", method)
    yield log
    config.remove_option("forge", "sync")
    atomic.set_sync_method("auto")


def _check(results: Path, log: DurabilityLog, markers: list[Path]) -> None:
    for marker in markers:
        step = marker.parent
        marked = log.first_durable(marker)
        assert marked is not None, f"{marker.relative_to(results)} was never synced"
        nested = {p.parent for p in markers if p != marker and step in p.parents}
        for path in step.rglob("*"):
            if path == marker or any(
                n == path or n in path.parents or path in n.parents for n in nested
            ):
                continue  # the marker itself; another (later) step's folder
            if path.name in {".lock"}:
                continue  # the step's lock file: holds no data
            durable = log.first_durable(path)
            # Strictly before: a sync that made the marker durable too came after it was
            # written, so it proves nothing about the order.
            assert durable is not None and durable < marked, (
                f"{path.relative_to(results)} not synced before {marker}"
            )
        # An upstream step's marker is durable no later than its downstream step's.
        for upstream in markers:
            if upstream != marker and upstream.parent in step.parents:
                first = log.first_durable(upstream)
                assert first is not None and first <= marked, f"{upstream} after {marker}"


def test_every_file_of_a_finished_step_is_synced_before_its_marker(
    tmp_path: Path, durability: DurabilityLog
) -> None:
    import luigi

    import pipelines

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
    _check(results, durability, markers)


def test_a_sweeps_chained_steps_sync_each_marker_with_the_next_round(
    tmp_path: Path, durability: DurabilityLog
) -> None:
    import luigi

    from pipelines import Sweep

    results = tmp_path / "results"
    train = write_yaml(tmp_path / "train.yaml", "epochs: 2\nbatch_size: 128\n")
    sweep = write_yaml(
        tmp_path / "sweep.yaml",
        f"data: [{CONFIGS / 'data' / 'moons.yaml'}]\n"
        f"model: [{CONFIGS / 'model' / 'mlp_torch.yaml'}]\n"
        f"train: [{train}]\n"
        "grid: {train.seed: [0, 1, 2]}\n",
    )
    assert luigi.build([Sweep(sweep_config=str(sweep), results_dir=str(results))],
                       local_scheduler=True)  # fmt: skip
    markers = sorted(p for p in results.rglob("_SUCCESS") if "sweeps" not in p.parts)
    assert len(markers) == 2 + 3 * 2  # data, model, then train and evaluation of each
    _check(results, durability, markers)

"""The shared loop and its callbacks, driven by a tiny numpy session (no framework)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.backends.base import ScalarWriter, TrainSession, TrainSettings
from tasks.data.h5store import BatchStream, read_meta, write_splits
from tasks.errors import ConfigError, TrainingDivergedError
from tasks.loop import Callback, Loop, fit_epochs
from tasks.loop.callbacks import (
    BestWeights,
    Checkpointing,
    EarlyStopping,
    LRSchedule,
    MetricsCsv,
    Progress,
    SearchStop,
    TensorBoard,
)
from tasks.loop.callbacks import tensorboard as tensorboard_callback
from tasks.loop.callbacks.checkpointing import INLINE_STATE_BYTES
from tasks.loop.schedules import Warmup, cosine, exponential, onecycle, plateau, step
from tasks.store.atomic import synced_at_end
from tasks.store.checkpoints import CheckpointInfo, best_path, commit_partial, committed
from tasks.store.metrics_log import read_metrics
from tasks.store.records import BestRecord


class LinearSession(TrainSession):
    """Least squares ``y ≈ x @ w`` by SGD in numpy: a session with no framework."""

    def __init__(self, settings: TrainSettings, blow_up_at: int | None = None) -> None:
        self.settings = settings
        self.model = None
        self.w = np.zeros(2)
        self.lr = float(settings.optimizer["lr"])
        self.grad = np.zeros(2)
        self.steps = 0
        self.blow_up_at = blow_up_at
        self.lrs: list[float] = []

    def _loss(self, batch: Mapping[str, np.ndarray]) -> tuple[float, np.ndarray]:
        x, y = batch["x"].astype(np.float64), batch["y"].astype(np.float64)
        err = x @ self.w - y
        return float(np.mean(err**2)), 2 * x.T @ err / len(y)

    def train_step(
        self, batch: Mapping[str, np.ndarray], weight: float = 1.0, apply: bool = True
    ) -> Mapping[str, Any]:
        loss, grad = self._loss(batch)
        self.grad += weight * grad
        if apply:
            self.w -= self.lr * self.grad
            self.grad[:] = 0
            self.steps += 1
            self.lrs.append(self.lr)
        if self.blow_up_at is not None and self.steps >= self.blow_up_at:
            loss = math.inf
        return {"loss": np.float64(loss)}

    def eval_step(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        return {"loss": np.float64(self._loss(batch)[0])}

    def to_numpy(self, values: Sequence[Any]) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def learning_rate(self) -> float:
        return self.lr

    def set_learning_rate(self, lr: float) -> None:
        self.lr = lr

    def save_checkpoint(self, path: Path, epoch: int) -> None:
        np.save(path.with_suffix(".npy"), self.w)
        path.write_bytes(path.with_suffix(".npy").read_bytes())

    def load_checkpoint(self, path: Path) -> int:
        return int(path.name[6:10])

    def save_weights(self, path: Path) -> None:
        path.write_bytes(self.w.tobytes())


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 2)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0])).astype(np.float32)
    path = tmp_path_factory.mktemp("loop") / "data.h5"
    write_splits(path, {"x": x, "y": y}, {"val": 0.2, "test": 0.1, "seed": 0}, {}, "loop test")
    return path


def _ignore(epoch: int, logs: dict[str, float]) -> None:
    """An epoch callback that does nothing."""


def _settings(path: Path, epochs: int = 4, lr: float = 0.05, **extra: Any) -> TrainSettings:
    return TrainSettings(
        epochs=epochs,
        batch_size=10,
        optimizer={"name": "sgd", "lr": lr},
        loss="mse",
        seed=0,
        device="cpu",
        objective=None,
        meta=read_meta(path),
        **extra,
    )


def _streams(path: Path, batch: int = 10) -> tuple[BatchStream, BatchStream]:
    return (
        BatchStream(path, "train", batch, shuffle=False),
        BatchStream(path, "val", batch, shuffle=False),
    )


def test_accumulating_two_half_batches_equals_one_full_batch(data_file: Path) -> None:
    # 70 training rows: batches of 20 are 20,20,20,10; of 10 grouped by 2 the same rows.
    full = LinearSession(_settings(data_file))
    fit_epochs(full, BatchStream(data_file, "train", 20, shuffle=False), None, 0, _ignore)
    halves = LinearSession(_settings(data_file, accumulate=2))
    fit_epochs(halves, BatchStream(data_file, "train", 10, shuffle=False), None, 0, _ignore)
    assert halves.steps == full.steps == 4 * 4
    np.testing.assert_allclose(halves.w, full.w, rtol=1e-12)
    plain = LinearSession(_settings(data_file))
    fit_epochs(plain, BatchStream(data_file, "train", 10, shuffle=False), None, 0, _ignore)
    assert not np.allclose(plain.w, full.w)  # the control: without grouping it differs


def test_logs_are_row_weighted_means_and_val_is_prefixed(data_file: Path) -> None:
    logs: list[dict[str, float]] = []
    session = LinearSession(_settings(data_file, epochs=2, lr=0.0))
    train, val = _streams(data_file)
    fit_epochs(session, train, val, 0, lambda e, values: logs.append(values))
    assert [set(row) for row in logs] == [{"loss", "val_loss"}] * 2
    x, y = (
        np.concatenate([b["x"] for b in val.epoch(1)]),
        np.concatenate([b["y"] for b in val.epoch(1)]),
    )
    assert logs[0]["val_loss"] == pytest.approx(float(np.mean(y.astype(np.float64) ** 2)))
    assert len(x) == val.rows


def test_a_non_finite_epoch_stops_before_any_callback_sees_it(data_file: Path) -> None:
    seen: list[int] = []

    class Record(Callback):
        def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
            seen.append(epoch)

    session = LinearSession(_settings(data_file), blow_up_at=9)  # 7 steps per epoch
    with pytest.raises(TrainingDivergedError, match="diverged at epoch 2: metric 'loss'"):
        fit_epochs(session, *_streams(data_file), 0, _ignore, [Record()])
    assert seen == [1]


def test_early_stopping_stops_and_its_state_round_trips(data_file: Path) -> None:
    stopper = EarlyStopping("val_loss", "min", patience=2, min_delta=1e9)
    loop = fit_epochs(
        LinearSession(_settings(data_file, epochs=10)), *_streams(data_file), 0,
        _ignore, [stopper],
    )  # fmt: skip
    # Epoch 1 sets the best; no later epoch beats it by 1e9: stop after 2 more.
    assert (loop.end_reason, loop.epoch) == ("early_stopping", 3)
    again = EarlyStopping("val_loss", "min", patience=2)
    again.load_state(stopper.state())
    assert again.state() == stopper.state()
    with pytest.raises(ConfigError, match="early_stopping.monitor"):
        fit_epochs(
            LinearSession(_settings(data_file)), *_streams(data_file), 0, _ignore,
            [EarlyStopping("val_accuracy", "max", 1)],
        )  # fmt: skip


def test_a_stopped_run_stays_stopped_after_resume(data_file: Path, tmp_path: Path) -> None:
    session = LinearSession(_settings(data_file, epochs=6))
    train, val = _streams(data_file)
    hook = SearchStop(lambda epoch, logs: "halved" if epoch == 2 else None)
    loop = Loop(session, train, val, 6, [hook, Checkpointing(tmp_path, ".ckpt", every=5)])
    loop.run()
    assert (loop.end_reason, loop.epoch, hook.reason) == ("stopped", 2, "halved")
    info = committed(tmp_path)[-1]
    assert info.epoch == 2  # a stop is checkpointed even between checkpoint_every epochs
    resumed = Loop(LinearSession(_settings(data_file, epochs=6)), train, val, 6, [],
                   start_epoch=info.epoch)  # fmt: skip
    resumed.load_state(info.loop)
    resumed.run()
    assert (resumed.end_reason, resumed.epoch) == ("stopped", 2)


def test_keep_checkpoints_keeps_the_newest(data_file: Path, tmp_path: Path) -> None:
    session = LinearSession(_settings(data_file, epochs=5))
    loop = Loop(session, *_streams(data_file), 5, [Checkpointing(tmp_path, ".ckpt", 1, keep=2)])
    loop.run()
    assert [info.epoch for info in committed(tmp_path)] == [4, 5]
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch-*")) == [
        "epoch-0004.ckpt", "epoch-0004.json", "epoch-0005.ckpt", "epoch-0005.json",
    ]  # fmt: skip


class _Clock(Callback):
    """A clock that moves ``step`` seconds at every epoch end (before the checkpoint)."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        return self.now

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        self.now += self.step


class _Written(Callback):
    """The committed checkpoints' epochs after each epoch end (after the checkpoint)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.epochs: list[int] = []

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        self.epochs += [i.epoch for i in committed(self.folder) if i.epoch not in self.epochs]


@pytest.mark.parametrize(
    ("min_interval", "keep", "step", "written"),
    [
        (1.0, 1, 0.4, [3, 6]),  # 1.2 s after the start, then the last epoch
        (1.0, 1, 1.0, [1, 2, 3, 4, 5, 6]),  # epochs as long as the interval: all
        (0.0, 1, 0.4, [1, 2, 3, 4, 5, 6]),  # no minimum: every epoch
        (1.0, 2, 0.4, [1, 2, 3, 4, 5, 6]),  # kept checkpoints are never skipped
        (60.0, 1, 0.4, [6]),  # only the last
    ],
)
def test_checkpoints_younger_than_the_minimum_interval_are_skipped(
    data_file: Path, tmp_path: Path, min_interval: float, keep: int, step: float,
    written: list[int],
) -> None:  # fmt: skip
    clock, seen = _Clock(step), _Written(tmp_path)
    ckpt = Checkpointing(tmp_path, ".ckpt", 1, keep=keep, background=False,
                         min_interval_s=min_interval, clock=clock)  # fmt: skip
    Loop(LinearSession(_settings(data_file, epochs=6)), *_streams(data_file), 6,
         [clock, ckpt, seen]).run()  # fmt: skip
    assert seen.epochs == written
    assert committed(tmp_path)[-1].epoch == 6


def test_a_stop_is_checkpointed_however_recent_the_last_checkpoint(
    data_file: Path, tmp_path: Path
) -> None:
    clock, seen = _Clock(0.1), _Written(tmp_path)
    hook = SearchStop(lambda epoch, logs: "halved" if epoch == 2 else None)
    ckpt = Checkpointing(tmp_path, ".ckpt", 1, keep=1, background=False, min_interval_s=60.0,
                         clock=clock)  # fmt: skip
    loop = Loop(LinearSession(_settings(data_file, epochs=6)), *_streams(data_file), 6,
                [clock, hook, ckpt, seen])  # fmt: skip
    loop.run()
    assert (loop.end_reason, seen.epochs) == ("stopped", [2])


class ResumableSession(LinearSession):
    """A LinearSession whose checkpoint really restores it (weights and epoch)."""

    def save_checkpoint(self, path: Path, epoch: int) -> None:
        path.write_bytes(np.asarray([epoch, *self.w], dtype=np.float64).tobytes())

    def load_checkpoint(self, path: Path) -> int:
        epoch, *w = np.frombuffer(path.read_bytes(), dtype=np.float64)
        self.w = np.asarray(w)
        return int(epoch)


class StopAt(Callback):
    """Requests a stop (a preemption) after training batch ``index`` of ``epoch``."""

    def __init__(self, epoch: int, index: int) -> None:
        self.at = (epoch, index)
        self.requests: list[str] = []

    def on_train_begin(self, loop: Loop) -> None:
        loop.interrupt = self.requests

    def on_batch_end(self, loop: Loop, epoch: int, index: int, scalars: Mapping[str, Any]) -> None:
        if (epoch, index) == self.at:
            self.requests.append("SIGUSR1")

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        if self.requests:  # as the preemption callback does
            loop.stop("preempted")


def _run(
    data_file: Path, folder: Path, epochs: int, callbacks: list[Callback], accumulate: int = 1
) -> tuple[Loop, ResumableSession, list[dict[str, float]]]:
    """Train (resuming from ``folder``'s newest checkpoint, a partial one included)."""
    session = ResumableSession(_settings(data_file, epochs=epochs, accumulate=accumulate))
    infos = committed(folder, partial=True)
    start = session.load_checkpoint(infos[-1].path) if infos else 0
    logs: list[dict[str, float]] = []
    loop = Loop(session, BatchStream(data_file, "train", 10, seed=3), _streams(data_file)[1],
                epochs, [*callbacks, _Record(logs), Checkpointing(folder, ".ckpt", every=1)],
                start_epoch=start, accumulate=accumulate)  # fmt: skip
    if infos:
        loop.load_state(infos[-1].loop)
    loop.run()
    return loop, session, logs


class _Record(Callback):
    def __init__(self, logs: list[dict[str, float]]) -> None:
        self.logs = logs

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        self.logs.append({"epoch": epoch, **logs, "lr": loop.lr})


@pytest.mark.parametrize("accumulate", [1, 2], ids=["plain", "accumulate-2"])
def test_a_stop_inside_an_epoch_resumes_at_the_next_batch(
    data_file: Path, tmp_path: Path, accumulate: int
) -> None:
    steps = -(-7 // accumulate)  # 70 rows in batches of 10

    def schedule() -> LRSchedule:  # noqa: E306 - a per-step schedule must resume mid-epoch
        return LRSchedule(onecycle(0.05, epochs=3, steps_per_epoch=steps), accumulate)

    _, whole, whole_logs = _run(data_file, tmp_path / "whole", 3, [schedule()], accumulate)
    folder = tmp_path / "stopped"
    # A stop asked after batch 2 (the first of a group when accumulating) waits for the step.
    loop, first, logs = _run(data_file, folder, 3, [schedule(), StopAt(2, 2)], accumulate)
    done = 4 if accumulate == 2 else 3
    assert (loop.end_reason, loop.epoch, len(logs)) == ("preempted", 1, 1)
    assert loop.partial is not None and (loop.partial["epoch"], loop.partial["batches"]) == (
        2,
        done,
    )
    # Only resume sees the partial checkpoint: it is no finished epoch.
    assert [info.epoch for info in committed(folder)] == [1]
    (info,) = [info for info in committed(folder, partial=True) if info.partial]
    assert (info.epoch, info.path.name, info.loop["partial"]["batches"]) == (
        1,
        "partial-0002.ckpt",
        done,
    )

    loop, second, more = _run(data_file, folder, 3, [schedule()], accumulate)
    assert (loop.end_reason, loop.epoch) == ("completed", 3)
    np.testing.assert_array_equal(second.w, whole.w)  # bit for bit
    assert first.lrs + second.lrs == whole.lrs  # the per-step schedule continued too
    assert [log["epoch"] for log in logs + more] == [1, 2, 3]
    for got, want in zip(logs + more, whole_logs, strict=True):
        assert got.keys() == want.keys()
        assert got == pytest.approx(want, rel=1e-12, abs=0)  # summation order only
    assert not list((folder / "checkpoints").glob("partial-*"))  # superseded by epoch 2


def test_a_stop_in_an_epochs_last_batch_finishes_the_epoch(data_file: Path, tmp_path: Path) -> None:
    loop, _, logs = _run(data_file, tmp_path, 3, [StopAt(1, 6)])  # batch 6 of 0..6
    assert (loop.end_reason, loop.epoch, loop.partial) == ("preempted", 1, None)
    assert [log["epoch"] for log in logs] == [1]
    assert [info.epoch for info in committed(tmp_path, partial=True)] == [1]


def test_a_stop_inside_a_diverged_epoch_keeps_nothing(data_file: Path, tmp_path: Path) -> None:
    session = ResumableSession(_settings(data_file), blow_up_at=2)
    loop = Loop(session, *_streams(data_file), 4,
                [StopAt(1, 4), Checkpointing(tmp_path, ".ckpt", every=1)])  # fmt: skip
    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        loop.run()
    assert committed(tmp_path, partial=True) == []


def test_a_partial_state_that_does_not_fit_is_refused(data_file: Path, tmp_path: Path) -> None:
    _run(data_file, tmp_path, 2, [StopAt(1, 3)])
    (info,) = committed(tmp_path, partial=True)
    assert info.partial and info.epoch == 0
    state = dict(info.loop)
    same_order = BatchStream(data_file, "train", 10, seed=3)
    fresh = Loop(ResumableSession(_settings(data_file)), same_order, None, 2, [])
    fresh.load_state(state)
    assert fresh.partial is not None and fresh.partial["batches"] == 4
    for bad in ({"batches": 7}, {"batches": 0}, {"epoch": 2}, {"of": 8}, {"sums": None}):
        with pytest.raises(ValueError, match="partial-epoch state"):
            fresh.load_state({**state, "partial": {**state["partial"], **bad}})
    # The same batches in another order (another seed, shuffling, or block size from
    # [forge] buffer_mb): skipping the done ones would train some rows twice, some never.
    for other in (
        BatchStream(data_file, "train", 10, seed=4),
        BatchStream(data_file, "train", 10, shuffle=False),
        BatchStream(data_file, "train", 10, seed=3, buffer_bytes=1),
    ):
        elsewhere = Loop(ResumableSession(_settings(data_file)), other, None, 2, [])
        with pytest.raises(ValueError, match="batch order"):
            elsewhere.load_state(state)
    # A sidecar without the loop's partial state is no usable partial checkpoint.
    commit_partial(tmp_path, 1, ".ckpt", {"loop": {}})
    assert committed(tmp_path, partial=True) == []


def test_schedules_follow_their_torch_counterparts() -> None:
    assert [step(1.0, step_size=2, gamma=0.5).lr(e, 0) for e in range(5)] == [
        1.0, 1.0, 0.5, 0.5, 0.25,
    ]  # fmt: skip
    assert exponential(2.0, gamma=0.5).lr(3, 0) == 0.25
    cos = cosine(1.0, epochs=4, eta_min=0.1)
    assert cos.lr(0, 0) == 1.0 and cos.lr(4, 0) == pytest.approx(0.1)
    assert cos.lr(2, 0) == pytest.approx(0.55)
    one = onecycle(0.1, epochs=2, steps_per_epoch=10, max_lr=1.0)
    lrs = [one.lr(e, s) for e in range(2) for s in range(10)]
    assert lrs[0] == pytest.approx(1.0 / 25) and max(lrs) == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(1.0 / 25 / 1e4) and one.per_step
    warm = Warmup(step(1.0, step_size=1, gamma=0.5), 2)
    assert [warm.lr(e, 0) for e in range(4)] == pytest.approx([1 / 3, 2 / 3, 1.0, 0.5])


def test_plateau_lowers_the_rate_and_resumes_where_it_was() -> None:
    sched = plateau(1.0, "val_loss", "min", factor=0.5, patience=1)
    for epoch, value in enumerate([1.0, 2.0, 2.0], start=1):
        sched.observe(epoch, {"val_loss": value})
    assert sched.lr(3, 0) == 0.5  # two bad epochs > patience 1: halved, counter reset
    again = plateau(1.0, "val_loss", "min", factor=0.5, patience=1)
    again.load_state(sched.state())
    assert again.lr(3, 0) == 0.5 and again.state() == sched.state()
    for sch in (sched, again):
        sch.observe(4, {"val_loss": 2.0})
        sch.observe(5, {"val_loss": 2.0})
    assert sched.lr(5, 0) == again.lr(5, 0) == 0.25


def test_lr_schedule_sets_the_rate_per_epoch_and_per_step(data_file: Path) -> None:
    session = LinearSession(_settings(data_file, epochs=3, lr=1.0))
    fit_epochs(session, *_streams(data_file), 0, _ignore,
               [LRSchedule(step(1.0, step_size=1, gamma=0.1))])  # fmt: skip
    assert sorted(set(session.lrs), reverse=True) == pytest.approx([1.0, 0.1, 0.01])
    session = LinearSession(_settings(data_file, epochs=1, lr=1.0, accumulate=2))
    fit_epochs(session, *_streams(data_file), 0, _ignore,
               [LRSchedule(onecycle(1.0, epochs=1, steps_per_epoch=4), accumulate=2)])  # fmt: skip
    assert len(session.lrs) == 4 and len(set(session.lrs)) == 4


class Reporter:
    """What Luigi's task offers the visualiser, recorded."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.percentages: list[float] = []

    def set_status_message(self, message: str) -> None:
        self.messages.append(message)

    def set_progress_percentage(self, percentage: float) -> None:
        self.percentages.append(percentage)


@pytest.mark.parametrize("interactive", [True, False], ids=["terminal", "log"])
def test_progress_shows_a_batch_bar_only_on_a_terminal(
    interactive: bool, data_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reporter = Reporter()
    bar = Progress(reporter, "exp", interactive=interactive)
    fit_epochs(LinearSession(_settings(data_file, epochs=2)), *_streams(data_file), 0, _ignore,
               [bar])  # fmt: skip
    assert reporter.percentages == [50.0, 100.0]
    assert reporter.messages[-1].startswith("epoch 2/2: loss=")
    err = capsys.readouterr().err
    if interactive:
        assert "exp epoch 2/2" in err and "7/7" in err and "batch/s" in err
    else:
        assert err == ""


class SnapshotSession(LinearSession):
    """A session whose checkpoints and best weights are copied now and written later,
    slowly, on the checkpoint thread (as the torch and TensorFlow sessions do)."""

    snapshots = True

    def checkpoint_writer(self, epoch: int) -> Any:
        w = self.w.copy()

        def write(path: Path) -> None:
            time.sleep(0.05)  # still writing while the next epoch trains
            path.write_bytes(w.tobytes())

        return write

    def weights_writer(self) -> Any:
        w = self.w.copy()

        def write(path: Path) -> None:
            time.sleep(0.05)
            path.write_bytes(w.tobytes())

        return write


class CommittedPromises(Callback):
    """At every epoch end (while a checkpoint may be in flight), checks what the newest
    committed checkpoint (the one a resume starts from) promises: its best weights are on
    disk and metrics.csv was synced up to its epoch."""

    def __init__(self, directory: Path, synced: list[int]) -> None:
        self.directory = directory
        self.synced = synced
        self.checked = 0

    def on_epoch_end(self, loop: Loop, epoch: int, logs: dict[str, float]) -> None:
        info = self._newest()
        if info is None:
            return
        # The checkpoint thread may commit a newer checkpoint (and drop this one's best
        # file) between the listing and the look: then the newer one is checked.
        while not self._best(info).exists() and (newer := self._newest()) != info:
            assert newer is not None
            info = newer
        assert self._best(info).exists()
        assert self.synced and self.synced[-1] >= info.epoch
        self.checked += 1

    def _newest(self) -> CheckpointInfo | None:
        found = committed(self.directory)
        return found[-1] if found else None

    def _best(self, info: CheckpointInfo) -> Path:
        assert info.best_epoch is not None
        return best_path(self.directory, info.best_epoch, ".w")


class SmallSnapshotSession(SnapshotSession):
    """A snapshot session whose state is small: checkpoints are written on the training
    thread, and only their syncs and sidecars on the checkpoint thread."""

    def state_nbytes(self) -> int | None:
        return int(self.w.nbytes)


@pytest.mark.parametrize("session_type", [SnapshotSession, SmallSnapshotSession])
def test_best_weights_and_metrics_are_durable_before_a_checkpoint_commits(
    data_file: Path, tmp_path: Path, session_type: type[SnapshotSession]
) -> None:
    session = session_type(_settings(data_file, epochs=6))
    rows = MetricsCsv(tmp_path / "metrics.csv")
    synced: list[int] = []

    def sync() -> None:
        rows.sync()
        synced.append(len(read_metrics(tmp_path / "metrics.csv")))

    best = BestWeights(tmp_path, ".w", "val_loss", "min")
    checking = CommittedPromises(tmp_path, synced)
    ckpt = Checkpointing(tmp_path, ".ckpt", 1, best, keep=None, before_commit=[sync])
    loop = Loop(session, *_streams(data_file), 6, [rows, best, ckpt, checking])
    loop.run()
    assert checking.checked > 0  # the checks ran against committed checkpoints
    assert [info.epoch for info in committed(tmp_path)] == [1, 2, 3, 4, 5, 6]
    # One sync per checkpoint, each covering at least the rows of its epoch (the next
    # epoch's row may already be appended while the checkpoint thread works).
    assert len(synced) == 6
    assert all(rows >= epoch for epoch, rows in enumerate(synced, start=1))
    # The best file was written from the copy taken at its epoch, not from later weights.
    assert best.epoch is not None
    assert (tmp_path / "model" / "best.w").read_bytes() == best_path(
        tmp_path, best.epoch, ".w"
    ).read_bytes()
    assert BestRecord.read(tmp_path).epoch == best.epoch


def test_a_stop_asked_after_the_last_epoch_is_recorded_but_not_obeyed(data_file: Path) -> None:
    asked: list[int] = []

    def prune_at_three(epoch: int, logs: dict[str, float]) -> str | None:
        asked.append(epoch)
        return "pruned" if epoch >= 3 else None

    last = Loop(LinearSession(_settings(data_file, epochs=3)), *_streams(data_file), 3,
                [SearchStop(prune_at_three)])  # fmt: skip
    last.run()
    assert asked == [1, 2, 3] and last.end_reason == "completed"
    # The control: the same rule one epoch before the end stops the run as pruned.
    asked.clear()
    early = Loop(LinearSession(_settings(data_file, epochs=4)), *_streams(data_file), 4,
                 [SearchStop(prune_at_three)])  # fmt: skip
    early.run()
    assert asked == [1, 2, 3] and early.end_reason == "pruned"


class SnapshotResumable(SnapshotSession, ResumableSession):
    """Copies now, writes later (as the real sessions do), and really resumes."""


def test_a_partial_checkpoint_finds_the_best_weights_it_names(
    data_file: Path, tmp_path: Path
) -> None:
    # Checkpoints every 2 epochs: epoch 1's best weights are still only in memory when a
    # stop inside epoch 2 writes the partial checkpoint that names them.
    session = SnapshotResumable(_settings(data_file, epochs=3))
    best = BestWeights(tmp_path, ".w", "val_loss", "min")
    rows = MetricsCsv(tmp_path / "metrics.csv")
    loop = Loop(session, *_streams(data_file), 3,
                [rows, best, StopAt(2, 2), Checkpointing(tmp_path, ".ckpt", 2, best,
                                                         before_commit=[rows.sync])])  # fmt: skip
    loop.run()
    assert loop.end_reason == "preempted"
    (info,) = committed(tmp_path, partial=True)
    assert info.partial and info.best_epoch == 1
    assert best_path(tmp_path, 1, ".w").exists()
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.csv")] == [1]


class ThreadRecording(SmallSnapshotSession):
    """Records which thread wrote each checkpoint file."""

    def __init__(self, settings: TrainSettings, nbytes: int | None) -> None:
        super().__init__(settings)
        self.nbytes = nbytes
        self.writers: list[str] = []

    def state_nbytes(self) -> int | None:
        return self.nbytes

    def checkpoint_writer(self, epoch: int) -> Any:
        write = super().checkpoint_writer(epoch)

        def recorded(path: Path) -> None:
            self.writers.append(threading.current_thread().name)
            write(path)

        return recorded


@pytest.mark.parametrize(
    ("nbytes", "on_training_thread"),
    [(1024, True), (INLINE_STATE_BYTES + 1, False), (None, False)],
)
def test_a_small_state_is_written_on_the_training_thread(
    data_file: Path, tmp_path: Path, nbytes: int | None, on_training_thread: bool
) -> None:
    session = ThreadRecording(_settings(data_file, epochs=3), nbytes)
    ckpt = Checkpointing(tmp_path, ".ckpt", 1, keep=None)
    Loop(session, *_streams(data_file), 3, [ckpt]).run()
    main = threading.main_thread().name
    assert len(session.writers) == 3
    assert all((name == main) is on_training_thread for name in session.writers)
    assert [info.epoch for info in committed(tmp_path)] == [1, 2, 3]


def test_the_last_commit_is_handed_to_the_steps_barrier(data_file: Path, tmp_path: Path) -> None:
    failures: list[int] = []

    def fail_at_the_last_commit() -> None:
        failures.append(1)
        if len(failures) == 3:
            raise OSError(28, "No space left on device")

    def loop() -> Loop:
        ckpt = Checkpointing(
            tmp_path, ".ckpt", 1, keep=None, before_commit=[fail_at_the_last_commit]
        )
        return Loop(SmallSnapshotSession(_settings(data_file, epochs=3)), *_streams(data_file),
                    3, [ckpt])  # fmt: skip

    with synced_at_end() as barrier:
        loop().run()  # training ends without waiting for the last commit...
        assert barrier.waits
        with pytest.raises(OSError, match="No space left"):
            barrier.join()  # ...whose error the step's barrier raises before its marker
    assert [info.epoch for info in committed(tmp_path)] == [1, 2]
    # The control: outside a step (no barrier to hand it to), training waits and raises.
    failures.clear()
    for sidecar in tmp_path.glob("checkpoints/*"):
        sidecar.unlink()
    with pytest.raises(OSError, match="No space left"):
        loop().run()


class FlushRecorder(ScalarWriter):
    def __init__(self) -> None:
        self.flushes: list[bool] = []
        self.closed = False

    def add_scalars(self, step: int, values: Mapping[str, float], flush: bool = True) -> None:
        self.flushes.append(flush)

    def close(self) -> None:
        self.closed = True


def test_event_files_are_flushed_at_most_once_a_second_and_at_the_end(
    data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = FlushRecorder()
    Loop(LinearSession(_settings(data_file, epochs=4)), *_streams(data_file), 4,
         [TensorBoard(writer)]).run()  # fmt: skip
    assert writer.flushes == [True, False, False, False] and writer.closed
    # The control: with no minimum interval every epoch is flushed.
    monkeypatch.setattr(tensorboard_callback, "FLUSH_SECONDS", 0.0)
    writer = FlushRecorder()
    Loop(LinearSession(_settings(data_file, epochs=4)), *_streams(data_file), 4,
         [TensorBoard(writer)]).run()  # fmt: skip
    assert writer.flushes == [True, True, True, True]

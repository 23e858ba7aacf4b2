"""Train: fit the model, log metrics, checkpoint, resume after interruption.

The experiment directory is Train's. It is written progressively (so an interrupted run
can resume) and counts as complete only when ``_SUCCESS`` is written at the very end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tasks import export_policy, preemption
from tasks.backends import get_backend
from tasks.backends.base import Backend, TrainSession, TrainSettings
from tasks.base import ForgeTask, TrainParams
from tasks.build_model import BuildModel
from tasks.config.schema import input_names
from tasks.config.yamlio import dump_yaml
from tasks.data.h5store import BatchStream, DataMeta, read_meta
from tasks.errors import ConfigError, PreemptedError
from tasks.loop import Callback, Loop
from tasks.loop.callbacks import (
    BestWeights,
    Checkpointing,
    EarlyStopping,
    LRSchedule,
    MetricsCsv,
    Preemption,
    Progress,
    SearchStop,
    TensorBoard,
)
from tasks.loop.loop import PREEMPTED
from tasks.loop.schedules import Schedule, Warmup
from tasks.provenance import git_state, package_versions, run_environment
from tasks.registry import get_entry, names
from tasks.run_context import record_run_context
from tasks.search.trial import StopTraining, report_epoch
from tasks.settings import forge
from tasks.stages import TRAIN_SECTIONS
from tasks.store.atomic import (
    atomic_path,
    atomic_write_text,
    current_barrier,
    storage_error,
    sync_file,
)
from tasks.store.checkpoints import CheckpointInfo, committed, discard_partial, prune
from tasks.store.drift import code_fingerprints
from tasks.store.names import (
    CONFIG_FILE,
    DATA_FILE,
    GIT_DIFF_FILE,
    INITIAL_WEIGHTS,
    LOG_FILE,
    METRICS_FILE,
    MODEL_DIR,
    PARAMS_FILE,
    RUNS_LOG,
    TENSORBOARD_DIR,
)
from tasks.store.records import RunRecord, json_text, write_json

__all__ = ["Train"]

logger = logging.getLogger("forge")


class _TrainLogHandler(logging.FileHandler):
    """``train.log``: a copy of the run's log. When it cannot be written (a full disk) it
    stops quietly: the error that matters is reported on the console once, and logging's
    default would print a traceback for every message after it."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.setLevel(logging.CRITICAL + 1)


@contextlib.contextmanager
def _log_to(path: Path) -> Iterator[None]:
    handler = _TrainLogHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    forge_logger = logging.getLogger("forge")
    old_level = forge_logger.level
    if forge_logger.getEffectiveLevel() > logging.INFO:
        forge_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        forge_logger.setLevel(old_level)
        root.removeHandler(handler)
        with contextlib.suppress(OSError):  # flushing the last lines to a full disk
            handler.close()


def _await_last_checkpoint() -> None:
    """Wait for the last checkpoint, whose commit ran while Train wrote its other files
    (handed to the step's barrier by :class:`Checkpointing`); raise its error."""
    barrier = current_barrier()
    if barrier is not None:
        barrier.join()


def _log_attempt(directory: Path, run: dict[str, Any]) -> None:
    """Append one line per training attempt event to ``runs.jsonl``.

    ``run.json`` is rewritten by every attempt; this append-only log keeps them all, so
    "was this experiment trained exactly once" can be answered from the experiment itself.
    """
    line = {k: run.get(k) for k in ("status", "start", "end", "host")}
    line["pid"] = os.getpid()
    with open(directory / RUNS_LOG, "a", encoding="utf-8") as fh:
        fh.write(json_text(line, indent=None))


class Train(TrainParams, ForgeTask):
    """Train the model: the experiment directory ``<model dir>/<train>-<hash>/``."""

    level = "train"

    def requires(self) -> BuildModel:
        return BuildModel(**self.upstream_kwargs("model"))

    def resolved_config(self) -> dict[str, Any]:
        return {level: self.spec[level].config for level in TRAIN_SECTIONS}

    def run(self) -> None:
        self._check_objective(read_meta(self.spec.dirs["data"] / DATA_FILE))
        with preemption.watching():  # SIGUSR1/SIGTERM: checkpoint, then stop
            if preemption.stop_requested():  # asked before training began: start none
                raise PreemptedError(
                    f"Train for {self.spec.dirs['train']} stopped by {preemption.received()} "
                    "before training began; rerun the same command to train"
                )
            super().run()

    def _check_objective(self, meta: DataMeta) -> None:
        """Unlabelled data needs a named objective: fail before the experiment starts.

        Raises:
            ConfigError: the data has no ``y`` and the model config names no objective.
        """
        model = self.spec["model"].config
        if model.get("objective") or "y" in meta.arrays:
            return
        registered = names("objective", model["framework"])
        raise ConfigError(
            f"model config {self.spec['model'].source}: key 'objective' is not set, but the "
            f"data has no 'y' array (only {', '.join(sorted(meta.arrays))}), so the train "
            f"config's loss {self.spec['train'].config['loss']!r} has no targets. Name a "
            f"registered objective; registered for {model['framework']}: "
            f"{', '.join(registered) or '(none)'}"
        )

    def resumable(self, directory: Path) -> bool:
        """A failed Train keeps its folder when a committed checkpoint can resume it."""
        return bool(committed(directory, partial=True))

    def produce(self, directory: Path) -> None:
        with _log_to(directory / LOG_FILE):
            self._write_inputs(directory)
            run = self._start_record(directory)
            try:
                self._train(directory, run)
                run["environment"] = record_run_context(directory, self.resolved_config())
                _await_last_checkpoint()
            except BaseException as err:
                with contextlib.suppress(BaseException):  # its own error is the echo
                    _await_last_checkpoint()  # done before the folder is judged resumable
                run.update(status="failed", error=f"{type(err).__name__}: {err}")
                if isinstance(err, PreemptedError):
                    run["end_reason"] = "preempted"
                self._finish_record(directory, run)
                raise
            run["status"] = "done"
            self._finish_record(directory, run)
        # Files appended in place, not through an atomic write: synced with the step's other
        # files before its marker.
        for appended in (directory / LOG_FILE, directory / RUNS_LOG):
            sync_file(appended)
        for event_file in sorted((directory / TENSORBOARD_DIR).rglob("*")):
            sync_file(event_file)

    # -- records -----------------------------------------------------------------------

    def _write_inputs(self, directory: Path) -> None:
        atomic_write_text(directory / CONFIG_FILE, dump_yaml(self.resolved_config()))
        params = {"task": self.task_family, **self.to_str_params()}
        write_json(directory / PARAMS_FILE, params)

    def _start_record(self, directory: Path) -> dict[str, Any]:
        git, diff = git_state(Path.cwd())
        if diff:
            atomic_write_text(directory / GIT_DIFF_FILE, diff)
        framework = self.spec["model"].config["framework"]
        versions = package_versions(("luigi", "h5py", "numpy", "pyyaml"))
        run: dict[str, Any] = {
            "status": "running",
            "start": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "end": None,
            "duration_s": None,
            **run_environment(),
            "framework": framework,
            "versions": versions,
            "seed": self.spec["train"].config["seed"],
            "device": None,
            "git": {**git, "diff_file": GIT_DIFF_FILE if diff else None},
            "code": code_fingerprints(self.resolved_config()),
            "digests": {level: self.spec[level].digest for level in TRAIN_SECTIONS},
        }
        self._t0 = time.monotonic()
        RunRecord.write(directory, run)
        _log_attempt(directory, run)
        return run

    def _finish_record(self, directory: Path, run: dict[str, Any]) -> None:
        run["end"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        run["duration_s"] = round(time.monotonic() - self._t0, 3)
        with contextlib.suppress(Exception):  # never mask the training error itself
            RunRecord.write(directory, run)
            _log_attempt(directory, run)

    # -- training ----------------------------------------------------------------------

    def _train(self, directory: Path, run: dict[str, Any]) -> None:
        cfg = self.resolved_config()
        train_cfg = cfg["train"]
        backend = get_backend(cfg["model"]["framework"])
        run["versions"].update(backend.versions())
        device = backend.resolve_device(train_cfg["device"])
        run["device"] = device
        data_path = self.spec.dirs["data"] / DATA_FILE
        meta = read_meta(data_path)
        inputs = input_names(cfg["model"])
        model = backend.build(
            get_entry("model", cfg["model"]["builder"], cfg["model"]["framework"]),
            cfg["model"]["params"],
            meta,
            seed=cfg["model"]["seed"],
            inputs=inputs,
        )
        initial = self.spec.dirs["model"] / (INITIAL_WEIGHTS + backend.weights_suffix)
        backend.load_weights(model, initial)
        objective = (
            get_entry("objective", cfg["model"]["objective"], cfg["model"]["framework"])
            if cfg["model"].get("objective")
            else None
        )
        settings = TrainSettings(
            epochs=train_cfg["epochs"],
            batch_size=train_cfg["batch_size"],
            optimizer=train_cfg["optimizer"],
            loss=train_cfg["loss"],
            seed=train_cfg["seed"],
            device=device,
            objective=objective,
            meta=meta,
            inputs=inputs,
            grad_clip=train_cfg["grad_clip"],
            accumulate=train_cfg["accumulate"],
            precision=train_cfg["precision"],
            deterministic=train_cfg["deterministic"],
        )
        session = backend.session(model, settings)
        run["optimizer_kernel"] = session.optimizer_kernel()
        loop = self._fit(directory, backend, session, settings, meta, data_path, run)
        run.update(end_reason=loop.end_reason, end_epoch=loop.epoch)
        if loop.end_reason == PREEMPTED:
            where = f"epoch {loop.epoch}/{settings.epochs}"
            if loop.partial is not None:
                where = (
                    f"batch {loop.partial['batches']}/{loop.partial['of']} of epoch "
                    f"{loop.partial['epoch']}/{settings.epochs}"
                )
            raise PreemptedError(
                f"Train for {directory} stopped by {preemption.received()} after {where}; "
                "its checkpoint is saved: rerun the same command to resume from it"
            )
        model_dir = directory / MODEL_DIR
        with atomic_path(model_dir / f"last{backend.weights_suffix}") as tmp:
            session.save_weights(tmp)
        run["export"] = (
            {"ok": False, "deferred": True, "error": export_policy.DEFERRED_NOTE}
            if export_policy.deferred()  # a sweep: the first code-free load exports
            else self._export(backend, session, meta, model_dir, inputs)
        )

    def _resume(self, directory: Path, session: TrainSession, backend: Backend) -> CheckpointInfo:
        """Restore the newest loadable committed checkpoint; epoch 0 when there is none."""
        checkpoints = committed(directory, partial=True)
        for info in reversed(checkpoints):
            if info.path.suffix != backend.checkpoint_suffix:
                continue
            try:
                epoch = session.load_checkpoint(info.path)
            except Exception as err:  # a damaged checkpoint: fall back to an older one
                logger.warning(
                    "checkpoint %s cannot be loaded (%s); trying an older one", info.path, err
                )
                continue
            prune(directory, after=epoch)  # keeps a partial checkpoint continuing it
            note = ""
            if info.partial:  # committed() checked that the loop state has its "partial"
                note = (
                    f", inside epoch {epoch + 1} after batch {info.loop['partial'].get('batches')}"
                )
            logger.info("resuming from checkpoint %s (epoch %d)%s", info.path.name, epoch, note)
            return replace(info, epoch=epoch)
        prune(directory, after=0)
        return CheckpointInfo(0, directory, None, None)

    def _fit(
        self,
        directory: Path,
        backend: Backend,
        session: TrainSession,
        settings: TrainSettings,
        meta: DataMeta,
        data_path: Path,
        run: dict[str, Any],
    ) -> Loop:
        """Resume from the newest usable checkpoint, run the shared loop with Forge's
        callbacks, and return it (for why it ended)."""
        train_cfg = self.spec["train"].config
        source = self.spec["train"].source
        buffer = int(forge().buffer_mb) * (1 << 20)
        train_stream = BatchStream(
            data_path,
            "train",
            settings.batch_size,
            shuffle=train_cfg["shuffle"],
            seed=settings.seed,
            buffer_bytes=buffer,
        )
        val_stream = (
            BatchStream(data_path, "val", settings.batch_size, shuffle=False, buffer_bytes=buffer)
            if meta.rows.get("val")
            else None
        )
        resumed = self._resume(directory, session, backend)
        probe = Loop(session, train_stream, None, settings.epochs, start_epoch=resumed.epoch)
        try:
            probe.load_state(resumed.loop)
        except ValueError as err:  # a partial checkpoint that cannot continue its epoch
            logger.warning(
                "checkpoint %s cannot continue its epoch (%s); resuming from the last finished "
                "epoch instead",
                resumed.path.name,
                err,
            )
            discard_partial(directory)
            resumed = self._resume(directory, session, backend)
        run["resumed_from_epoch"] = resumed.epoch or None
        if resumed.partial:  # continued epoch resumed_from_epoch + 1 after this many batches
            run["resumed_after_batch"] = resumed.loop["partial"].get("batches")
        best = BestWeights(
            directory, backend.weights_suffix, train_cfg["monitor"], train_cfg["mode"], source
        )
        callbacks: list[Callback] = []
        if train_cfg["scheduler"] is not None:
            steps = -(-len(train_stream) // settings.accumulate)
            callbacks.append(LRSchedule(self._schedule(steps), settings.accumulate))
        metrics_csv = MetricsCsv(directory / METRICS_FILE)
        callbacks += [
            metrics_csv,
            TensorBoard(
                backend.scalar_writer(directory / TENSORBOARD_DIR, resume_after=resumed.epoch)
            ),
            best,
        ]
        stopping = train_cfg["early_stopping"]
        if stopping is not None:
            callbacks.append(
                EarlyStopping(
                    stopping["monitor"],
                    stopping["mode"],
                    stopping["patience"],
                    stopping["min_delta"],
                    source,
                )
            )
        callbacks.append(Preemption())  # SIGUSR1/SIGTERM: checkpoint this epoch, then stop
        callbacks.append(SearchStop(self.should_stop))
        callbacks += [
            Checkpointing(
                directory,
                backend.checkpoint_suffix,
                train_cfg["checkpoint_every"],
                best,
                keep=train_cfg["keep_checkpoints"],
                before_commit=[metrics_csv.sync],
                min_interval_s=train_cfg["checkpoint_min_interval_s"],
            ),
            Progress(self, directory.name),
        ]
        loop = Loop(
            session,
            train_stream,
            val_stream,
            settings.epochs,
            callbacks,
            start_epoch=resumed.epoch,
            source=source,
            accumulate=settings.accumulate,
        )
        loop.load_state(resumed.loop)  # checked above
        best.load_state({"best_epoch": resumed.best_epoch, "best_value": resumed.best_value})
        loop.run()
        return loop

    def should_stop(self, epoch: int, logs: dict[str, float]) -> str | None:
        """The hook through which a search ends a trial early (a pruner).

        Asked after every epoch; a returned reason stops training and is recorded in
        run.json's ``end_reason`` (``pruned`` for a search's pruner). Outside a search it
        never stops.
        """
        try:
            report_epoch(epoch, logs)
        except StopTraining as stop:
            return stop.reason
        return None

    def _schedule(self, steps_per_epoch: int) -> Schedule:
        """The train config's learning-rate schedule (``warmup_epochs`` wrapped around it)."""
        train_cfg = self.spec["train"].config
        cfg = dict(train_cfg["scheduler"])
        name, warmup = cfg.pop("name"), int(cfg.pop("warmup_epochs", 0))
        entry = get_entry("scheduler", name, where=f"train config {self.spec['train'].source}")
        offered = {
            "base_lr": float(train_cfg["optimizer"]["lr"]),
            "epochs": int(train_cfg["epochs"]) - warmup,
            "steps_per_epoch": steps_per_epoch,
            "monitor": train_cfg["monitor"],
            "mode": train_cfg["mode"],
        }
        schedule: Schedule = entry.func(
            **{k: v for k, v in offered.items() if k in entry.reserved}, **cfg
        )
        return Warmup(schedule, warmup) if warmup else schedule

    def _export(
        self,
        backend: Backend,
        session: TrainSession,
        meta: DataMeta,
        model_dir: Path,
        inputs: tuple[str, ...],
    ) -> dict[str, Any]:
        model = getattr(session, "model", None)
        # Export the weights Evaluate and LoadTrained use by default (best), so the code-free
        # model predicts exactly what the rebuilt one does; the session is finished anyway.
        best = model_dir / f"best{backend.weights_suffix}"
        checkpoint = "best" if best.is_file() else "last"
        try:
            if checkpoint == "best":
                backend.load_weights(model, best)
            with atomic_path(model_dir / backend.export_name) as tmp:
                backend.export(model, meta, tmp, inputs)
        except Exception as err:  # export is a convenience; training itself succeeded
            storage = storage_error(err, str(model_dir / backend.export_name))
            if storage is not None:  # ... but a full disk is not a format the model lacks
                raise storage from err
            logger.warning("code-free export failed, LoadTrained will need the builder: %s", err)
            return {"ok": False, "error": f"{type(err).__name__}: {err}"}
        return {"ok": True, "file": f"{MODEL_DIR}/{backend.export_name}", "checkpoint": checkpoint}

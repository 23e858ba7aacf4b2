"""Train: fit the model, log metrics, checkpoint, resume after interruption.

The experiment directory is Train's. It is written progressively (so an interrupted run
can resume) and counts as complete only when ``_SUCCESS`` is written at the very end.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
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
from tasks.errors import ConfigError, PreemptedError, TrainingDivergedError
from tasks.provenance import git_state, package_versions, run_environment
from tasks.registry import get_entry, names
from tasks.run_context import record_run_context
from tasks.search.trial import StopTraining, report_epoch
from tasks.settings import forge
from tasks.stages import TRAIN_SECTIONS
from tasks.store.atomic import atomic_path, atomic_write_text, storage_error
from tasks.store.checkpoints import (
    best_path,
    checkpoint_path,
    commit,
    committed,
    improves,
    prune,
)
from tasks.store.drift import code_fingerprints
from tasks.store.metrics_log import MetricsLog
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
from tasks.store.records import BestRecord, RunRecord, json_text, write_json

__all__ = ["Train"]

logger = logging.getLogger("forge")


@contextlib.contextmanager
def _log_to(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path, encoding="utf-8")
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
        handler.close()


def _log_attempt(directory: Path, run: dict[str, Any]) -> None:
    """Append one line per training attempt event to ``runs.jsonl``.

    ``run.json`` is rewritten by every attempt; this append-only log keeps them all, so
    "was this experiment trained exactly once" can be answered from the experiment itself.
    """
    line = {k: run.get(k) for k in ("status", "start", "end", "host")}
    line["pid"] = os.getpid()
    with open(directory / RUNS_LOG, "a", encoding="utf-8") as fh:
        fh.write(json_text(line, indent=None))


def _check_finite(epoch: int, logs: dict[str, float], source: str, lr: float) -> None:
    """Stop at the first epoch whose losses or metrics are NaN or infinite.

    Both backends report every epoch through ``on_epoch_end``, so this one check covers
    them; it runs before the epoch is logged or checkpointed.

    Raises:
        TrainingDivergedError: a logged value is not finite.
    """
    bad = {k: float(v) for k, v in logs.items() if not math.isfinite(float(v))}
    if not bad:
        return
    name = "loss" if "loss" in bad else next(iter(bad))
    shown = ", ".join(f"{k}={v}" for k, v in bad.items())
    raise TrainingDivergedError(
        f"train config {source}: training diverged at epoch {epoch}: metric {name!r} is "
        f"{bad[name]} ({shown}); lower train.optimizer.lr (now {lr}), clip gradients in an "
        "objective, or scale the inputs"
    )


class _Progress:
    """Luigi progress/status (for the visualiser) and a tqdm bar on interactive terminals."""

    def __init__(self, task: Train, start: int, total: int) -> None:
        self.task = task
        self.total = total
        self.bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="epoch", desc=str(task.directory.name))

    def update(self, epoch: int, logs: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in logs.items())
        self.task.set_progress_percentage(round(100.0 * epoch / self.total, 1))
        self.task.set_status_message(f"epoch {epoch}/{self.total}: {shown}")
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(shown[:60])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
        return bool(committed(directory))

    def produce(self, directory: Path) -> None:
        with _log_to(directory / LOG_FILE):
            self._write_inputs(directory)
            run = self._start_record(directory)
            try:
                self._train(directory, run)
                run["environment"] = record_run_context(directory, self.resolved_config())
            except BaseException as err:
                run.update(status="failed", error=f"{type(err).__name__}: {err}")
                if isinstance(err, PreemptedError):
                    run["end_reason"] = "preempted"
                self._finish_record(directory, run)
                raise
            run["status"] = "done"
            self._finish_record(directory, run)

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
        )
        session = backend.session(model, settings)
        start, best_epoch, best_value = self._resume(directory, session, backend)
        run["resumed_from_epoch"] = start or None
        run["end_reason"] = self._fit(
            directory, backend, session, settings, meta, data_path, start, best_epoch, best_value
        )
        model_dir = directory / MODEL_DIR
        with atomic_path(model_dir / f"last{backend.weights_suffix}") as tmp:
            session.save_weights(tmp)
        run["export"] = (
            {"ok": False, "deferred": True, "error": export_policy.DEFERRED_NOTE}
            if export_policy.deferred()  # a sweep: the first code-free load exports
            else self._export(backend, session, meta, model_dir, inputs)
        )

    def _resume(
        self, directory: Path, session: TrainSession, backend: Backend
    ) -> tuple[int, int | None, float | None]:
        checkpoints = committed(directory)
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
            prune(directory, after=epoch)
            logger.info("resuming from checkpoint %s (epoch %d)", info.path.name, epoch)
            return epoch, info.best_epoch, info.best_value
        prune(directory, after=0)
        return 0, None, None

    def _fit(
        self,
        directory: Path,
        backend: Backend,
        session: TrainSession,
        settings: TrainSettings,
        meta: DataMeta,
        data_path: Path,
        start: int,
        best_epoch: int | None,
        best_value: float | None,
    ) -> str:
        train_cfg = self.spec["train"].config
        monitor, mode = train_cfg["monitor"], train_cfg["mode"]
        every = train_cfg["checkpoint_every"]
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
        log = MetricsLog(directory / METRICS_FILE, resume_after=start)
        writer = backend.scalar_writer(directory / TENSORBOARD_DIR, resume_after=start)
        progress = _Progress(self, start, settings.epochs)
        state: dict[str, Any] = {"best_epoch": best_epoch, "best_value": best_value}

        def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
            _check_finite(epoch, logs, self.spec["train"].source, settings.optimizer["lr"])
            if monitor not in logs:
                raise ConfigError(
                    f"train config {self.spec['train'].source}: key 'monitor' is {monitor!r}, "
                    f"but training logs only {sorted(logs)}; set monitor to one of them"
                )
            log.append(epoch, logs)
            writer.add_scalars(epoch, logs)
            value = float(logs[monitor])
            current = state["best_value"]
            improved = improves(value, current, mode)
            if improved:
                with atomic_path(best_path(directory, epoch, backend.weights_suffix)) as tmp:
                    session.save_weights(tmp)
                state.update(best_epoch=epoch, best_value=value)
            stop = preemption.stop_requested()
            if epoch % every == 0 or epoch == settings.epochs or stop:
                with atomic_path(
                    checkpoint_path(directory, epoch, backend.checkpoint_suffix)
                ) as tmp:
                    session.save_checkpoint(tmp, epoch)
                commit(directory, epoch, backend.checkpoint_suffix, dict(state))
                prune(directory, keep_best=state["best_epoch"])
            progress.update(epoch, logs)
            logger.info("epoch %d/%d %s", epoch, settings.epochs, logs)
            if stop:
                raise PreemptedError(
                    f"Train for {directory} stopped by {preemption.received()} after epoch "
                    f"{epoch}/{settings.epochs}; its checkpoint is saved: rerun the same "
                    "command to resume from it"
                )
            report_epoch(epoch, logs)  # a search may stop (prune) its trial here

        end_reason = "completed"
        try:
            session.fit(train_stream, val_stream, start, on_epoch_end)
        except StopTraining as stop:
            end_reason = stop.reason
            logger.info("training stopped early: %s", stop.reason)
        finally:
            writer.close()
            progress.close()
        best = state["best_epoch"]
        if best is not None:
            source = best_path(directory, best, backend.weights_suffix)
            with atomic_path(directory / MODEL_DIR / f"best{backend.weights_suffix}") as tmp:
                tmp.write_bytes(source.read_bytes())
        BestRecord(epoch=best, monitor=monitor, mode=mode, value=state["best_value"]).write(
            directory
        )
        return end_reason

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

"""Sweep: run every experiment of a sweep config, share upstream steps, summarise the result.

Why shards. Luigi's scheduler walks every task it knows on every ``get_work`` call, so a
sweep scheduled as one Luigi task per step (4 per experiment) costs time quadratic in the
number of experiments. A ``Sweep`` instead requires a bounded number of ``SweepShard``
tasks (``--shards``, default ``min(experiments, 64)``); each shard runs its experiments'
steps (PrepareData → BuildModel → Train → Evaluate) in its own process, skipping every
step already complete. The scheduler then sees at most 65 tasks whatever the sweep's
size, and the remaining per-experiment cost is a few file ``stat`` calls.

Exactly once. With ``luigid``, each shard is handed to exactly one worker, and every
experiment belongs to exactly one shard. Upstream steps shared between shards (one
PrepareData for many models) are guarded by the per-directory lock of
:class:`~tasks.base.ForgeTask`: the second process waits, then finds the step complete.

Failures. A shard runs all its experiments even when some fail, records the failures
under ``<sweep dir>/shards/``, rewrites the sweep summary, and only then fails (so the
command exits non-zero). ``Sweep`` itself runs only when every shard succeeded; when one
failed, the failing shard (and every shard finishing after it) writes the summary
instead, so the summary always exists and names the failures.

Forked workers. With ``--workers N > 1`` Luigi forks one process per task. Nothing here
imports torch or TensorFlow: configs are resolved and completeness is checked from files,
so frameworks are first imported inside the forked shard process that trains.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import luigi

from tasks import export_policy, preemption
from tasks.base import CachedParams, ForgeTask, FreshInstances, Spec, resolve_spec
from tasks.config.checks import logged_metrics
from tasks.config.compose import chain_key
from tasks.config.resolve import digest_of
from tasks.config.sweep import (
    Choices,
    SearchConfig,
    SweepExperiment,
    expand_sweep,
    load_sweep_config,
)
from tasks.config.yamlio import format_yaml_value
from tasks.errors import ConfigError, ForgeError, PreemptedError, SweepError
from tasks.evaluate import Evaluate
from tasks.settings import forge
from tasks.stages import SECTIONS
from tasks.store.atomic import atomic_write_text, chained_steps, storage_errors, synced_at_end
from tasks.store.lock import FolderLock, lock_held
from tasks.store.names import SUCCESS, SWEEP_WORKERS_DIR, SWEEPS_DIR
from tasks.store.records import json_text
from tasks.sweep_summary import SUMMARY_CSV, build_rows, write_summary

__all__ = [
    "MAX_AUTO_SHARDS",
    "ShardRunner",
    "Sweep",
    "SweepPlan",
    "SweepReport",
    "SweepShard",
    "check_preempted",
    "load_plan",
    "locked_summary",
    "plan_complete",
    "shard_tasks",
    "worker_tag",
]

logger = logging.getLogger("forge")

SHARDS_DIR = "shards"
MAX_AUTO_SHARDS = 64


@dataclass
class SweepPlan:
    """A sweep expanded into experiments, each resolved to its directories."""

    source: Path
    name: str
    digest: str
    results_root: Path
    experiments: list[SweepExperiment]
    specs: list[Spec]
    inputs: tuple[Any, ...] = field(repr=False, default=())
    search: SearchConfig | None = None
    export: str = "lazy"

    @property
    def directory(self) -> Path:
        """``<results>/sweeps/<name>-<hash>/``: summary and shard records."""
        return self.results_root / SWEEPS_DIR / f"{self.name}-{self.digest[:8]}"

    def done(self, index: int) -> bool:
        """Whether experiment ``index`` is evaluated (its Evaluate marker exists)."""
        return (self.specs[index].dirs["eval"] / SUCCESS).is_file()

    def busy(self, index: int) -> bool:
        """Whether another process is running experiment ``index``'s Train or Evaluate now."""
        dirs = self.specs[index].dirs
        return lock_held(dirs["train"]) or lock_held(dirs["eval"])

    def key(self, index: int) -> str:
        """A stable id of experiment ``index``: its Evaluate directory, relative."""
        return str(self.specs[index].dirs["eval"].relative_to(self.results_root))

    def describe(self, index: int) -> dict[str, Any]:
        """What the summary shows about experiment ``index`` besides its status."""
        spec = self.specs[index]
        return {
            "id": self.key(index),
            "experiment": str(spec.dirs["train"].relative_to(self.results_root)),
            "eval_dir": spec.dirs["eval"],
            "framework": spec["model"].config["framework"],
            "names": {level: spec[level].name for level in SECTIONS},
            "values": dict(self.experiments[index].values),
        }


_plans: dict[tuple[Any, ...], SweepPlan] = {}


def _sweep_name(path: Path, configured: str | None) -> str:
    if configured:
        return configured
    return re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)[:64].lstrip("._-") or "sweep"


def load_plan(sweep_config: str, results_root: Path) -> SweepPlan:
    """Validate, expand and resolve a sweep (memoised on the files' stat).

    Raises:
        ConfigError: the sweep file or any experiment's configs or values are invalid.
    """
    path = Path(sweep_config)
    key = (chain_key(sweep_config), str(results_root), os.getcwd())
    cached = _plans.get(key)
    if cached is not None and cached.inputs == _input_keys(cached.experiments):
        return cached
    config = load_sweep_config(path)
    experiments = expand_sweep(config, path)
    specs = []
    for exp in experiments:
        paths = {"data": exp.data, "model": exp.model, "train": exp.train, "eval": exp.eval}
        try:
            specs.append(resolve_spec(SECTIONS, paths, exp.overrides, results_root))
        except ForgeError as err:
            raise type(err)(
                f"sweep config {path}: experiment with {exp.overrides or 'no overrides'}: {err}"
            ) from err
    identity: Any = [[spec[level].digest for level in SECTIONS] for spec in specs]
    if config.search is not None:
        _check_space(path, config.search, experiments[0], results_root)
        # ``trials`` is not part of it: raising it continues the same study.
        identity = {"experiments": identity, "search": config.search.identity()}
    plan = SweepPlan(
        source=path,
        name=_sweep_name(path, config.name),
        digest=digest_of(identity),
        results_root=results_root,
        experiments=experiments,
        specs=specs,
        inputs=_input_keys(experiments),
        search=config.search,
        export=config.export,
    )
    _plans[key] = plan
    return plan


def _check_space(
    path: Path, search: SearchConfig, base: SweepExperiment, results_root: Path
) -> None:
    """Every key of the search space must exist in the resolved configs, and its values
    must fit: resolve the base experiment with each key at its first choice (or ``low``),
    then with one key at a time at each of its other choices, at ``high``, and, for a
    continuous float range, at a value between (which an integer key refuses).

    Raises:
        ConfigError: a key does not exist or a value does not fit its schema.
    """
    first = {k: d.choices[0] if isinstance(d, Choices) else d.low for k, d in search.space.items()}
    probes: list[tuple[str | None, Any]] = [(None, None)]
    for key, dim in search.space.items():
        if isinstance(dim, Choices):
            others = dim.choices[1:]
        elif dim.integer or dim.step is not None:
            others = [dim.high]
        else:
            low, high = dim.low, dim.high
            # Not a round number: an integer key refuses it as it refuses most suggestions.
            if dim.log:
                between = math.exp(math.log(low) + 0.382 * (math.log(high) - math.log(low)))
            else:
                between = low + 0.382 * (high - low)
            others = [high, between]
        probes += [(key, value) for value in others]
    spec = None
    for varied, value in probes:
        values = {**first, varied: value} if varied is not None else first
        probe = SweepExperiment(base.data, base.model, base.train, base.eval, tuple(values.items()))
        paths = {"data": probe.data, "model": probe.model, "train": probe.train, "eval": probe.eval}
        where = "" if varied is None else f" (at {varied}={format_yaml_value(value)})"
        try:
            resolved = resolve_spec(SECTIONS, paths, probe.overrides, results_root)
        except ForgeError as err:
            raise type(err)(f"sweep config {path}: key 'search.space'{where}: {err}") from err
        spec = spec or resolved
    assert spec is not None
    logged = logged_metrics(spec.sections)
    if logged is not None and search.metric not in logged:
        raise ConfigError(
            f"sweep config {path}: key 'search.metric' is {search.metric!r}, which training "
            f"never logs; set it to one of {', '.join(sorted(logged))}"
        )


def _input_keys(experiments: list[SweepExperiment]) -> tuple[Any, ...]:
    files = sorted({p for e in experiments for p in (e.data, e.model, e.train, e.eval) if p})
    return tuple(chain_key(p) for p in files)  # each file's stat and its bases' too


@contextlib.contextmanager
def locked_summary(directory: Path) -> Iterator[None]:
    """Serialise summary writers of one sweep (across processes and hosts)."""
    with FolderLock.of(directory).hold():
        yield


def _recorded_failures(plan: SweepPlan) -> dict[str, dict[str, str]]:
    failures: dict[str, dict[str, str]] = {}
    records = sorted(
        (plan.directory / SHARDS_DIR).glob("*.json"), key=lambda p: p.stat().st_mtime_ns
    )
    for record in records:
        with contextlib.suppress(OSError, ValueError):
            failures.update(json.loads(record.read_text()).get("failures", {}))
    return failures


def _summary_written(plan: SweepPlan) -> bool:
    """Whether the sweep has a summary already. Reading the shard records instead would
    cost every shard a read of all of them."""
    return (plan.directory / SUMMARY_CSV).exists()


def write_plan_summary(plan: SweepPlan) -> str:
    """Rewrite the sweep's summary files from the disk state; return the text table."""
    if plan.search is not None:
        from tasks.search.shard import write_search_plan_summary

        return write_search_plan_summary(plan)
    with locked_summary(plan.directory):
        failures = _recorded_failures(plan)
        rows = build_rows((plan.describe(i) for i in range(len(plan.specs))), failures)
        header = {"sweep": plan.name, "source": str(plan.source), "digest": plan.digest}
        return write_summary(plan.directory, rows, header)


class SweepParams(CachedParams):
    """Parameters shared by the sweep tasks (:class:`Sweep`, :class:`SweepShard`, …), whose
    Luigi parameter list is kept per class."""

    sweep_config = luigi.Parameter(description="Sweep config YAML (configs/sweeps/*.yaml).")
    results_dir = luigi.OptionalParameter(
        default=None, description="Results directory (default: [forge] results_dir, else results)."
    )

    @property
    def results_root(self) -> Path:
        return Path(self.results_dir or forge().results_dir)


class SweepShard(SweepParams, luigi.Task, metaclass=FreshInstances):
    """Run experiments ``index``, ``index + count``, … of a sweep, in this process."""

    index = luigi.IntParameter(description="Which shard (0-based).")
    count = luigi.IntParameter(description="How many shards the sweep is cut into.")
    sweep_digest = luigi.Parameter(description="Content hash of the expanded sweep.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan = load_plan(self.sweep_config, self.results_root)

    @property
    def indices(self) -> range:
        return range(self.index, len(self.plan.specs), self.count)

    def complete(self) -> bool:
        return all(self.plan.done(i) for i in self.indices)

    def run(self) -> None:
        plan = self.plan = load_plan(self.sweep_config, self.results_root)
        if plan.digest != self.sweep_digest:
            raise ConfigError(
                f"sweep config {self.sweep_config} (or a config it lists) changed since this "
                "sweep was scheduled; rerun the command"
            )
        runner = ShardRunner(self, plan, len(self.indices))
        # One sync round per step: each marker is synced with the next step's files, and
        # the last one with this shard's record.
        what = f"shard {self.index + 1}/{self.count} of sweep {plan.name}"
        with preemption.watching(), chained_steps():
            # An experiment another process is running (an identical command on this
            # host) waits until the shard's others are done: both processes work meanwhile,
            # instead of one waiting on the other's lock.
            later: list[tuple[int, int]] = []
            for position, index in enumerate(self.indices):
                check_preempted(what)
                if plan.busy(index):
                    later.append((position, index))
                    continue
                runner.run_experiment(position, index)
            for position, index in later:
                check_preempted(what)
                runner.run_experiment(position, index)
            with synced_at_end():
                self._write_record(plan, runner)
        # A summary written before the sweep is complete (by a shard with failures) is kept
        # current; otherwise the sweep's report writes the first one, once every shard is done.
        if runner.failures or _summary_written(plan):
            write_plan_summary(plan)
        if runner.failures:
            first = "; ".join(f"{k}: {v['error']}" for k, v in list(runner.failures.items())[:3])
            raise SweepError(
                f"{len(runner.failures)} of {len(self.indices)} experiments in shard "
                f"{self.index + 1}/{self.count} of sweep {plan.name} failed ({first}); "
                f"see {plan.directory / 'summary.txt'}"
            )

    def _write_record(self, plan: SweepPlan, runner: ShardRunner) -> None:
        """``shards/NNNN-of-NNNN.json``: what this shard ran, where, and what failed.

        A run that found every experiment done by another process meanwhile (identical
        commands on one host) keeps the record of the one that did the work.
        """
        shard_file = plan.directory / SHARDS_DIR / f"{self.index:04d}-of-{self.count:04d}.json"
        if not runner.ran and not runner.failures and shard_file.is_file():
            return
        record = {
            "shard": self.index,
            "count": self.count,
            "host": os.uname().nodename,
            "pid": os.getpid(),
            "ran": runner.ran,
            "step_seconds": round(runner.step_seconds, 6),
            "failures": runner.failures,
        }
        with storage_errors(str(shard_file)):
            shard_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(shard_file, json_text(record))


class ShardRunner:
    """Runs one experiment's chain of steps in-process, remembering shared upstream steps."""

    def __init__(self, shard: SweepParams, plan: SweepPlan, total: int) -> None:
        self.shard = shard
        self.plan = plan
        self.total = total
        self.done: set[str] = set()
        self.broken: dict[str, str] = {}
        self.ran: list[str] = []
        self.failures: dict[str, dict[str, str]] = {}
        self.step_seconds = 0.0

    def run_experiment(self, position: int, index: int) -> None:
        if self.plan.done(index):
            return
        key = self.plan.key(index)
        self.run_chain(position, key, self.plan.experiments[index].params(self.shard.results_dir))

    def run_chain(self, position: int, key: str, params: dict[str, Any]) -> bool:
        """Run one experiment's steps (those not complete); False when one failed."""
        chain: list[ForgeTask] = [Evaluate(**params)]
        while upstream := chain[-1].requires():
            chain.append(upstream)
        logger.info("sweep %s: experiment %d/%d %s", self.plan.name, position + 1, self.total, key)
        with export_policy.deferring(self.plan.export == "lazy"):
            return self._run_chain(position, key, chain)

    def _run_chain(self, position: int, key: str, chain: list[ForgeTask]) -> bool:
        executed = False  # whether this process ran any step (not only found them done)
        for task in reversed(chain):
            if task.task_id in self.done:
                continue
            if task.task_id in self.broken:
                self._fail(key, task, f"upstream step failed: {self.broken[task.task_id]}")
                return False
            try:
                if not task.complete():
                    self._execute(task, position)
                    executed = executed or task.produced
            except PreemptedError:
                raise  # the process is going away: stop the shard, not just this experiment
            except Exception as err:  # one experiment's failure must not stop the others
                message = f"{type(err).__name__}: {err}"
                self.broken[task.task_id] = message
                self._fail(key, task, message, err)
                return False
            self.done.add(task.task_id)
        if executed:
            self.ran.append(key)
        return True

    def _fail(self, key: str, task: ForgeTask, message: str, err: Exception | None = None) -> None:
        self.failures[key] = {"step": task.task_family, "error": message}
        logger.error(
            "sweep %s: experiment %s failed in %s: %s",
            self.plan.name,
            key,
            task.task_family,
            message,
            exc_info=err if err is not None and not isinstance(err, ForgeError) else None,
        )

    def _execute(self, task: ForgeTask, position: int) -> None:
        """Run ``task`` as Luigi's worker would, reporting progress through the shard."""
        task.set_status_message = self._status(task)
        task.set_progress_percentage = self._progress(position)
        task.set_tracking_url = lambda url: None
        started = time.perf_counter()
        try:
            task.run()
        finally:
            self.step_seconds += time.perf_counter() - started
        if not task.complete():
            raise SweepError(f"{task.task_family} finished, but its output is incomplete")

    def _status(self, task: ForgeTask) -> Callable[[str], None]:
        forward = getattr(self.shard, "set_status_message", None)

        def report(message: str) -> None:
            if callable(forward):
                forward(f"{task.directory.name} {task.task_family}: {message}")

        return report

    def _progress(self, position: int) -> Callable[[float], None]:
        forward = getattr(self.shard, "set_progress_percentage", None)

        def report(percentage: float) -> None:
            if callable(forward):
                forward(round((position + percentage / 100.0) * 100.0 / self.total, 1))

        return report


_started = int(time.time())


def worker_tag() -> str:
    """``<host>-<pid>-<start time>``: makes each worker command's :class:`Sweep` its own task."""
    return f"{os.uname().nodename}-{os.getpid()}-{_started}"


class SweepReport(SweepParams, luigi.Task, metaclass=FreshInstances):
    """One worker's last step of a sweep: check every shard, write the summary, sign off.

    :class:`Sweep` yields it only once all shards are complete. Luigi then walks its
    ``requires()`` (the shards) and records each as done in this worker's run, including
    shards other workers ran; that is what lets the worker exit 0. Its output is the
    worker's record under ``<sweep dir>/workers/``.
    """

    shards = luigi.IntParameter(description="How many shards the sweep is cut into.")
    sweep_digest = luigi.Parameter(description="Content hash of the expanded sweep.")
    worker = luigi.Parameter(description="The worker command (<host>-<pid>-<start time>).")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan = load_plan(self.sweep_config, self.results_root)

    def requires(self) -> list[luigi.Task]:
        return shard_tasks(self.sweep_config, self.results_dir, self.shards, self.sweep_digest)

    def output(self) -> luigi.LocalTarget:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", self.worker)
        return luigi.LocalTarget(str(self.plan.directory / SWEEP_WORKERS_DIR / f"{name}.json"))

    def run(self) -> None:
        text = write_plan_summary(self.plan)
        logger.info("sweep %s summary (%s):\n%s", self.plan.name, self.plan.directory, text)
        if self.plan.search is not None and not plan_complete(self.plan):
            raise SweepError(
                f"search {self.plan.name}: not every trial is finished; "
                f"see {self.plan.directory / 'summary.txt'}"
            )
        missing = [self.plan.key(i) for i in range(len(self.plan.specs)) if not self.plan.done(i)]
        if missing and self.plan.search is None:
            raise SweepError(
                f"sweep {self.plan.name}: {len(missing)} experiments are not complete "
                f"(e.g. {missing[0]}); see {self.plan.directory / 'summary.txt'}"
            )
        record = {"worker": self.worker, "host": os.uname().nodename, "pid": os.getpid()}
        target = Path(self.output().path)
        with storage_errors(str(target)):
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, json_text(record))


def check_preempted(what: str) -> None:
    """Stop before the next experiment once the process was asked to stop.

    Raises:
        PreemptedError: SIGUSR1 or SIGTERM was received.
    """
    if preemption.stop_requested():
        raise PreemptedError(
            f"{what} stopped by {preemption.received()} before its next experiment; "
            "rerun the same command to continue"
        )


def plan_complete(plan: SweepPlan) -> bool:
    """Every experiment evaluated (a grid), or every trial finished (a search)."""
    if plan.search is not None:
        from tasks.search.shard import search_study

        return search_study(plan).finished()
    return all(plan.done(i) for i in range(len(plan.specs)))


def shard_tasks(
    sweep_config: str, results_dir: str | None, count: int, digest: str
) -> list[luigi.Task]:
    """The ``count`` shards of a sweep (shared by every worker command of it)."""
    plan = load_plan(sweep_config, Path(results_dir or forge().results_dir))
    if plan.search is not None:
        from tasks.search.shard import SearchShard, search_study

        trials = search_study(plan).budget
        return [
            SearchShard(
                sweep_config=sweep_config,
                results_dir=results_dir,
                index=i,
                count=count,
                sweep_digest=digest,
                trials=trials,
            )
            for i in range(count)
        ]
    return [
        SweepShard(
            sweep_config=sweep_config,
            results_dir=results_dir,
            index=i,
            count=count,
            sweep_digest=digest,
        )
        for i in range(count)
    ]


class Sweep(SweepParams, luigi.Task, metaclass=FreshInstances):
    """Run every experiment of a sweep config and write its summary.

    Each worker command schedules its own ``Sweep`` (``worker`` defaults to
    ``<host>-<pid>``) over the shared ``SweepShard`` tasks, which it yields as dynamic
    dependencies. So every worker that stays
    until the last shard is done (``--worker-keep-alive``) runs its own ``Sweep`` and
    exits 0, and one that leaves while the sweep is incomplete exits non-zero (Luigi's
    ``not_run``): a worker's exit code says whether the sweep is complete.
    """

    shards = luigi.IntParameter(
        default=0,
        description=f"Shard tasks to cut the sweep into (0: min(experiments, {MAX_AUTO_SHARDS})). "
        "Every worker of one sweep must use the same value.",
    )
    worker = luigi.Parameter(
        default="",
        description="Which worker command this root task belongs to (default: <host>-<pid>).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not kwargs.get("worker"):
            kwargs["worker"] = worker_tag()
        super().__init__(*args, **kwargs)
        self.plan = load_plan(self.sweep_config, self.results_root)
        if self.shards < 0:
            raise ConfigError(f"--shards must be 0 (automatic) or positive, got {self.shards}")

    @property
    def shard_count(self) -> int:
        if self.plan.search is not None:
            # Each search shard asks for trials until the budget is used: one per worker
            # is enough, more only cost scheduling.
            return self.shards or min(self.plan.search.trials, MAX_AUTO_SHARDS)
        count = self.shards or min(len(self.plan.specs), MAX_AUTO_SHARDS)
        return max(1, min(count, len(self.plan.specs)))

    def shard_tasks(self) -> list[luigi.Task]:
        """The shards of this sweep (shared by every worker command of it)."""
        return shard_tasks(self.sweep_config, self.results_dir, self.shard_count, self.plan.digest)

    def report_task(self) -> SweepReport:
        """This worker's summary step, run once every shard is complete."""
        return SweepReport(
            sweep_config=self.sweep_config,
            results_dir=self.results_dir,
            shards=self.shard_count,
            sweep_digest=self.plan.digest,
            worker=self.worker,
        )

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.plan.directory / SUCCESS))

    def complete(self) -> bool:
        return Path(self.output().path).is_file() and plan_complete(self.plan)

    def run(self) -> Iterator[Any]:
        # Dynamic dependencies, in two rounds. A worker records a task as done only when
        # it ran it or found it complete when adding it; shards another worker finished
        # meanwhile would stay "pending" (exit code 25 although the sweep succeeded).
        # So: first run (or wait for) the shards, then add this worker's report, which
        # requires them all and is added only now that they are complete.
        yield self.shard_tasks()
        yield self.report_task()
        atomic_write_text(self.plan.directory / SUCCESS, "")

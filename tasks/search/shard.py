"""SearchShard: a worker's seat in a search; it asks for trials until the budget is used.

Asynchronous by construction: a shard asks the study for one trial, runs it (an ordinary
experiment: PrepareData → BuildModel → Train → Evaluate, each skipped when complete),
tells the result, and asks again; there is no batch to wait for. With N workers on
``luigid`` each runs its own shard, so N trials run at once, each on one worker (the
trial's lock). A shard ends when the study has ``trials`` finished trials and none is
running; while the last trials run elsewhere it waits for them (and takes over one whose
worker died), so that a finished shard means a finished search.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import luigi

from tasks import preemption
from tasks.base import FreshInstances
from tasks.config.sweep import SweepExperiment
from tasks.errors import ConfigError, SweepError
from tasks.evaluate import Evaluate
from tasks.search.study import SearchStudy, best_value, frozen_rows
from tasks.search.trial import PRUNED, reporting
from tasks.store.metrics_log import read_metrics
from tasks.store.names import METRICS_FILE
from tasks.store.records import RunRecord
from tasks.sweep import (
    ShardRunner,
    SweepParams,
    SweepPlan,
    check_preempted,
    load_plan,
    locked_summary,
)
from tasks.sweep_summary import write_search_summary

__all__ = ["SearchShard", "search_study", "write_search_plan_summary"]

logger = logging.getLogger("forge")

_WAIT_S = 1.0


def search_study(plan: SweepPlan) -> SearchStudy:
    """The study of a search plan."""
    assert plan.search is not None
    return SearchStudy(plan.directory, plan.search)


def write_search_plan_summary(plan: SweepPlan) -> str:
    """Rewrite the search's summary files from its study; return the text table."""
    study = search_study(plan)
    assert plan.search is not None
    with locked_summary(plan.directory):
        with study.locked() as optuna_study:
            study.counts(optuna_study)
            rows = frozen_rows(optuna_study)
        header = {"sweep": plan.name, "source": str(plan.source), "digest": plan.digest}
        return write_search_summary(plan.directory, rows, header, plan.search, study.budget)


class SearchShard(SweepParams, luigi.Task, metaclass=FreshInstances):
    """Ask, run and tell trials of a search until its budget of trials is finished."""

    index = luigi.IntParameter(description="Which shard (0-based).")
    count = luigi.IntParameter(description="How many shards the search is cut into.")
    sweep_digest = luigi.Parameter(description="Content hash of the search (without trials).")
    trials = luigi.IntParameter(description="The budget of trials this shard works towards.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan = load_plan(self.sweep_config, self.results_root)
        self.study = search_study(self.plan)

    def complete(self) -> bool:
        return self.study.finished()

    def run(self) -> None:
        plan = self.plan = load_plan(self.sweep_config, self.results_root)
        if plan.digest != self.sweep_digest:
            raise ConfigError(
                f"sweep config {self.sweep_config} (or a config it lists) changed since this "
                "search was scheduled; rerun the command"
            )
        runner = ShardRunner(self, plan, self.study.budget)
        failed: list[str] = []
        with preemption.watching():
            self._loop(runner, failed)
        write_search_plan_summary(plan)
        if failed:
            raise SweepError(
                f"{len(failed)} trials of search {plan.name} failed ({'; '.join(failed[:3])}); "
                f"see {plan.directory / 'summary.txt'}"
            )

    def _loop(self, runner: ShardRunner, failed: list[str]) -> None:
        """Ask, run, tell until the budget is finished. A preempted trial is not told: it
        stays RUNNING until its lock is free, then is asked again (and resumes)."""
        while True:
            check_preempted(f"shard {self.index + 1}/{self.count} of search {self.plan.name}")
            with contextlib.ExitStack() as holding:
                with self.study.locked() as study:
                    counts = self.study.counts(study)
                    if counts.finished >= self.study.budget and counts.running == 0:
                        break
                    trial = None
                    if counts.finished + counts.running < self.study.budget:
                        trial, values = self.study.ask(study)
                        holding.enter_context(self.study.trial_lock(trial.number).hold(0))
                        position = counts.finished + counts.running
                if trial is None:  # the last trials run elsewhere: wait for them
                    time.sleep(_WAIT_S)
                    continue
                error = self._run_trial(runner, trial, values, position)
                if error is not None:
                    failed.append(f"trial {trial.number}: {error}")

    def _run_trial(
        self, runner: ShardRunner, trial: Any, values: dict[str, Any], position: int
    ) -> str | None:
        """Run one trial's experiment and tell the study how it ended; the error of a
        failed trial, None otherwise."""
        from optuna.trial import TrialState

        plan = self.plan
        search = plan.search
        assert search is not None
        base = plan.experiments[0]
        experiment = SweepExperiment(
            base.data, base.model, base.train, base.eval, tuple(values.items())
        )
        params = experiment.params(self.results_dir)
        try:
            evaluate = Evaluate(**params)
            train_dir = evaluate.spec.dirs["train"]
        except ConfigError as err:
            # Values the configs refuse together though each fits alone (the space is
            # checked key by key: val and test splits summing past 1): the trial fails with
            # that error and counts, and the search goes on; asking again would fail again.
            logger.error("search %s: trial %d %s: %s", plan.name, trial.number,
                         experiment.overrides, err)  # fmt: skip
            with self.study.locked() as study:
                trial.set_user_attr("overrides", experiment.overrides)
                trial.set_user_attr("error", str(err)[:500])
                study.tell(trial, state=TrialState.FAIL)
            return str(err)
        key = str(evaluate.spec.dirs["eval"].relative_to(plan.results_root))
        with self.study.locked():
            trial.set_user_attr("experiment", str(train_dir.relative_to(plan.results_root)))
            trial.set_user_attr("overrides", experiment.overrides)
        logger.info("search %s: trial %d %s", plan.name, trial.number, experiment.overrides)

        def report(epoch: int, logs: Mapping[str, float]) -> bool:
            if search.metric not in logs:
                raise ConfigError(
                    f"sweep config {plan.source}: key 'search.metric' is {search.metric!r}, "
                    f"but training logs only {sorted(logs)}; set it to one of them"
                )
            with self.study.locked() as study:
                self.study.prepare(study)
                trial.report(float(logs[search.metric]), epoch)
                return bool(trial.should_prune())

        with reporting(report):
            ok = runner.run_chain(position, key, params)
        rows = read_metrics(train_dir / METRICS_FILE)
        pruned = RunRecord.read(train_dir).raw.get("end_reason") == PRUNED
        with self.study.locked() as study:
            reported = set(study.trials[trial.number].intermediate_values)
            for row in rows:  # a reused experiment: its epochs, for the pruner's statistics
                epoch = int(row.get("epoch", 0))
                if epoch not in reported and search.metric in row:
                    trial.report(float(row[search.metric]), epoch)
            value = best_value(rows, search.metric, search.direction)
            error: str | None = None
            if not ok:
                error = runner.failures.get(key, {}).get("error", "failed")
                trial.set_user_attr("error", error[:500])
                study.tell(trial, state=TrialState.FAIL)
            elif pruned:
                study.tell(trial, state=TrialState.PRUNED)
            elif value is None:
                error = f"no finite {search.metric!r} in {METRICS_FILE}"
                trial.set_user_attr("error", error)
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, value)
        return error

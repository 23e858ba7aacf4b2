"""A search's Optuna study: its journal file, samplers and pruners, and the trial life cycle.

Storage. Optuna's file journal (``JournalStorage`` over ``JournalFileBackend``) in the
search's folder: an append-only log of operations, no database server, readable on a
shared file system. Every access happens while holding the folder's study lock (Forge's
``flock``, :class:`~tasks.store.lock.FolderLock`), so Optuna's own lock file, which a
``kill -9`` could leave behind, is not used; a torn last line from such a kill is cut off
before the next access.

Trial life cycle. A worker asks for a trial and takes the trial's own lock
(``trials/<number>/.lock``) in the same locked step, and holds it until it has told the
result. A trial the journal calls RUNNING whose lock nobody holds therefore belongs to a
dead worker: the next worker to look marks it failed ("worker died", not counted) and
enqueues the same parameters again, so the next ask continues that very experiment (it
resumes from its checkpoint). Budget: COMPLETE, PRUNED and failed-with-an-error trials
count towards ``trials``; the search is finished when that many are finished.

Determinism. Samplers are created per ask, seeded with ``(seed, trial number)``, so the
suggestions do not depend on which process asks or on restarts.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.config.sweep import Choices, Range, SearchConfig
from tasks.config.yamlio import format_yaml_value
from tasks.errors import CorruptArtifactError
from tasks.store.lock import FolderLock, lock_held
from tasks.store.metrics_log import read_metrics
from tasks.store.names import SEARCH_JOURNAL, SEARCH_LOCK, SEARCH_TRIALS_DIR

if TYPE_CHECKING:
    import optuna

__all__ = ["DIED", "SearchStudy", "TrialCounts", "best_value", "trial_value"]

STUDY_NAME = "forge-search"
DIED = "worker died"
_ENDED = "forge_end"  # user attribute: why a failed trial failed


@dataclass(frozen=True)
class TrialCounts:
    """How many trials are finished (count towards the budget) and running."""

    finished: int
    running: int


def best_value(rows: list[dict[str, float]], metric: str, direction: str) -> float | None:
    """The best finite value of ``metric`` over the epochs in ``rows``."""
    values = [r[metric] for r in rows if metric in r and math.isfinite(r[metric])]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


def trial_value(experiment: Path, metric: str, direction: str) -> float | None:
    """A trial's value: the best epoch's ``metric`` in its experiment's ``metrics.csv``."""
    from tasks.store.names import METRICS_FILE

    return best_value(read_metrics(experiment / METRICS_FILE), metric, direction)


class _HeldLock:
    """Optuna's journal lock, for a journal only touched under Forge's study lock."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its line break (a writer killed mid-append)."""
    if not path.is_file():
        return
    with path.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        fh.truncate(data.rfind(b"\n") + 1)


def _seed(seed: int, number: int) -> int:
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class SearchStudy:
    """The study of one search, stored in ``directory``."""

    def __init__(self, directory: Path, config: SearchConfig) -> None:
        self.directory = directory
        self.config = config
        self.journal = directory / SEARCH_JOURNAL
        self._lock = FolderLock.of(directory, SEARCH_LOCK)
        self._study: optuna.Study | None = None

    # -- access ------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[optuna.Study]:
        """The study, with the study lock held for the block.

        Raises:
            CorruptArtifactError: the journal cannot be read (edited or damaged).
        """
        with self._lock.hold():
            _cut_torn_tail(self.journal)
            try:
                study = self._open()
                study.get_trials(deepcopy=False)  # reads what other processes appended
            except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
                self._study = None
                raise CorruptArtifactError(
                    f"search journal {self.journal} cannot be read ({type(err).__name__}: "
                    f"{str(err)[:200]}); move it aside and rerun: the search starts over, "
                    "and a trial that suggests a finished experiment's values reuses it"
                ) from err
            yield study

    def _open(self) -> optuna.Study:
        if self._study is None:
            import optuna
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            backend = JournalFileBackend(str(self.journal), lock_obj=_HeldLock())  # type: ignore[arg-type]
            self._study = optuna.create_study(
                study_name=STUDY_NAME,
                storage=JournalStorage(backend),
                direction=self.config.direction,
                load_if_exists=True,
            )
        return self._study

    def trial_lock(self, number: int) -> FolderLock:
        """The lock a worker holds while it runs trial ``number``."""
        return FolderLock.of(self.directory / SEARCH_TRIALS_DIR / f"{number:05d}")

    def _alive(self, number: int) -> bool:
        return lock_held(self.directory / SEARCH_TRIALS_DIR / f"{number:05d}")

    # -- the budget ----------------------------------------------------------------------

    def counts(self, study: optuna.Study) -> TrialCounts:
        """Finished and running trials (a dead worker's RUNNING trial is failed first)."""
        from optuna.trial import TrialState

        self.reap(study)
        finished = running = 0
        for trial in study.get_trials(deepcopy=False):
            if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
                finished += 1
            elif trial.state == TrialState.FAIL and not _died(trial):
                finished += 1
            elif trial.state == TrialState.RUNNING:
                running += 1
        return TrialCounts(finished, running)

    @property
    def budget(self) -> int:
        """``trials``, or the size of the grid when the grid sampler has fewer points."""
        if self.config.sampler != "grid":
            return self.config.trials
        size = 1
        for values in self._grid().values():
            size *= len(values)
        return min(self.config.trials, size)

    def finished(self) -> bool:
        """Whether the budget of trials is finished (none left to ask or running)."""
        if not self.journal.is_file():
            return False
        try:
            with self.locked() as study:
                counts = self.counts(study)
        except CorruptArtifactError:
            return False  # not finished: running it reports the damage, as one error
        return counts.finished >= self.budget and counts.running == 0

    def reap(self, study: optuna.Study) -> None:
        """Fail RUNNING trials whose worker died, and enqueue their parameters again."""
        import optuna
        from optuna.trial import TrialState

        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if self._alive(trial.number):
                continue
            optuna.trial.Trial(study, trial._trial_id).set_user_attr(_ENDED, DIED)
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})

    # -- asking --------------------------------------------------------------------------

    def _grid(self) -> dict[str, list[Any]]:
        grid: dict[str, list[Any]] = {}
        for key, dim in self.config.space.items():
            if isinstance(dim, Choices):
                grid[key] = [format_yaml_value(c) for c in dim.choices]
            else:
                values = dim.grid()
                assert values is not None  # checked by the config
                grid[key] = values
        return grid

    def _sampler(self, number: int) -> optuna.samplers.BaseSampler:
        import optuna

        seed = _seed(self.config.seed, number)
        name = self.config.sampler
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        if name == "grid":
            # One seed for every ask: the sampler shuffles its grid with it, and a trial's
            # recorded grid point must mean the same point to every later ask.
            return optuna.samplers.GridSampler(self._grid(), seed=_seed(self.config.seed, 0))
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    def _pruner(self) -> optuna.pruners.BasePruner:
        import optuna

        if self.config.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=self.config.startup_trials)
        if self.config.pruner == "asha":
            return optuna.pruners.SuccessiveHalvingPruner()
        return optuna.pruners.NopPruner()

    def ask(self, study: optuna.Study) -> tuple[optuna.Trial, dict[str, Any]]:
        """A new trial and the config values it suggests (call with the lock held).

        The sampler is seeded with the number of trials asked before, not counting those
        a dead worker left (each is asked again, with its parameters, as a new trial), so
        a resumed search goes on with the suggestions an uninterrupted one makes.
        """
        import optuna

        asked = [t for t in study.get_trials(deepcopy=False) if not _died(t)]
        study.sampler = self._sampler(len(asked))
        study.pruner = self._pruner()
        trial = study.ask()
        values: dict[str, Any] = {}
        for key, dim in self.config.space.items():
            values[key] = _suggest(trial, key, dim)
        # Telling goes through a sampler without end-of-study actions: the grid sampler
        # stops the study when its grid is used up, which Optuna allows only inside
        # ``optimize``.
        study.sampler = optuna.samplers.RandomSampler()
        return trial, values

    def prepare(self, study: optuna.Study) -> None:
        """Set the pruner (for should_prune) on a study loaded by this process."""
        study.pruner = self._pruner()


def _died(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` was failed because its worker died (it was asked again)."""
    return trial.user_attrs.get(_ENDED) == DIED


def _suggest(trial: optuna.Trial, key: str, dim: Range | Choices) -> Any:
    if isinstance(dim, Choices):
        texts = [format_yaml_value(c) for c in dim.choices]
        picked = trial.suggest_categorical(key, texts)
        return dim.choices[texts.index(str(picked))]
    if dim.integer:
        step = int(dim.step) if dim.step is not None else 1
        return trial.suggest_int(key, int(dim.low), int(dim.high), step=step, log=dim.log)
    return trial.suggest_float(key, float(dim.low), float(dim.high), step=dim.step, log=dim.log)


def frozen_rows(study: optuna.Study) -> list[Mapping[str, Any]]:
    """Every trial as a plain mapping (number, state, params, value, user attributes)."""
    return [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "params": dict(t.params),
            "value": t.value,
            "user_attrs": dict(t.user_attrs),
            "intermediate": dict(t.intermediate_values),
        }
        for t in study.get_trials(deepcopy=False)
    ]

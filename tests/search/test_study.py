"""The search study without training: what the sampler suggests after a worker died, and
the grid sampler's walk over its grid."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from tasks.config.sweep import Choices, Range, SearchConfig
from tasks.errors import CorruptArtifactError
from tasks.search.study import SearchStudy


def _config(sampler: str, space: dict[str, Range | Choices], trials: int = 4) -> SearchConfig:
    return SearchConfig(
        metric="val_accuracy", direction="maximize", trials=trials, sampler=sampler, seed=4,
        space=space,
    )  # fmt: skip


LR = {"train.optimizer.lr": Range(low=0.0001, high=0.1, log=True)}


def _ask_and_tell(study: SearchStudy, value: float) -> dict[str, Any]:
    with study.locked() as optuna_study:
        study.counts(optuna_study)  # what a worker does first: reap dead workers' trials
        trial, values = study.ask(optuna_study)
        optuna_study.tell(trial, value)
    return values


def test_a_resumed_search_suggests_what_an_uninterrupted_one_would(tmp_path: Path) -> None:
    straight = SearchStudy(tmp_path / "straight", _config("random", LR))
    expected = [_ask_and_tell(straight, float(n)) for n in range(3)]

    resumed = SearchStudy(tmp_path / "resumed", _config("random", LR))
    got = [_ask_and_tell(resumed, 0.0)]
    with resumed.locked() as optuna_study:
        resumed.ask(optuna_study)  # trial 1's worker dies: nobody holds its lock
    got.append(_ask_and_tell(resumed, 1.0))  # the dead trial, asked again
    got.append(_ask_and_tell(resumed, 2.0))
    assert got == expected
    with resumed.locked() as optuna_study:
        assert resumed.counts(optuna_study).finished == 3


def test_the_grid_sampler_visits_every_point_once(tmp_path: Path) -> None:
    space: dict[str, Range | Choices] = {
        "model.params.hidden": Choices(choices=[[4], [8]]),
        "train.epochs": Range(low=1, high=3),
    }
    study = SearchStudy(tmp_path / "grid", _config("grid", space, trials=10))
    assert study.budget == 6
    seen = [_ask_and_tell(study, 0.5) for _ in range(study.budget)]  # the last tell: no error
    points = sorted((str(v["model.params.hidden"]), v["train.epochs"]) for v in seen)
    assert points == sorted(itertools.product(["[4]", "[8]"], [1, 2, 3]))
    assert study.finished()


def test_a_damaged_journal_is_one_error_naming_it(tmp_path: Path) -> None:
    study = SearchStudy(tmp_path / "damaged", _config("random", LR))
    _ask_and_tell(study, 0.5)
    lines = study.journal.read_text().splitlines(keepends=True)
    lines[1] = '{"op_code": 6, garbage\n'  # an edited line, not a torn last one
    study.journal.write_text("".join(lines))
    with pytest.raises(CorruptArtifactError, match=r"search journal .*study\.journal.*aside"):
        with SearchStudy(tmp_path / "damaged", _config("random", LR)).locked():
            pass

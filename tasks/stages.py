"""The stage table: the pipeline's steps, their config sections and folder levels, in order.

Everything that needs the order data → model → train → eval reads it from here::

    stage  task         config param    stored config  folder (under the results dir)
    data   PrepareData  --data-config   data.yaml      <data>-<h>/
    model  BuildModel   --model-config  model.yaml     <data>-<h>/<model>-<h>/
    train  Train        --train-config  config.yaml    .../<model>-<h>/<train>-<h>/ (experiment)
    eval   Evaluate     --eval-config   eval.yaml      .../<train>-<h>/eval/<eval>-<h>/
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.store.names import (
    CONFIG_FILE,
    DATA_CONFIG_FILE,
    EVAL_CONFIG_FILE,
    EVAL_DIR,
    MODEL_CONFIG_FILE,
)

__all__ = [
    "EXPERIMENT_DEPTH",
    "SECTIONS",
    "STAGES",
    "TRAIN_SECTIONS",
    "Stage",
    "sections_upto",
    "stage",
]


@dataclass(frozen=True)
class Stage:
    """One pipeline step.

    Attributes:
        section: the config section it resolves (``data``, ``model``, ``train``, ``eval``).
        task: the Luigi task family that runs it.
        stored_config: the file in its folder holding its resolved config (Train's
            ``config.yaml`` holds data, model and train together).
        subdir: a folder its step folders live in under the upstream one (``eval/``).
        depth: how many path parts its folder lies below the results directory.
    """

    section: str
    task: str
    stored_config: str
    subdir: str | None
    depth: int

    @property
    def config_param(self) -> str:
        """The Luigi parameter naming its config file (``data_config``, ...)."""
        return f"{self.section}_config"


STAGES: tuple[Stage, ...] = (
    Stage("data", "PrepareData", DATA_CONFIG_FILE, None, 1),
    Stage("model", "BuildModel", MODEL_CONFIG_FILE, None, 2),
    Stage("train", "Train", CONFIG_FILE, None, 3),
    Stage("eval", "Evaluate", EVAL_CONFIG_FILE, EVAL_DIR, 5),
)
SECTIONS: tuple[str, ...] = tuple(s.section for s in STAGES)
_BY_SECTION = {s.section: s for s in STAGES}


def stage(section: str) -> Stage:
    """The stage resolving ``section``."""
    return _BY_SECTION[section]


def sections_upto(section: str) -> tuple[str, ...]:
    """``section`` and every section upstream of it, in pipeline order."""
    return SECTIONS[: SECTIONS.index(section) + 1]


# The sections an experiment (a Train folder) is made of, and how deep it lies.
TRAIN_SECTIONS = sections_upto("train")
EXPERIMENT_DEPTH = stage("train").depth

"""Every name Forge gives a stored file or folder, in one place.

An experiment tree (see :mod:`tasks.stages` for which step owns which level)::

    <results>/
      .forge/index.jsonl, index.lock        the `forge ls` cache (rebuildable)
      sweeps/<sweep>-<hash>/                 sweep plans, shard records and summaries
      <data>-<hash>/                         PrepareData: data.h5, meta.json, data.yaml
        <model>-<hash>/                      BuildModel: initial weights, model.json, model.yaml
          <train>-<hash>/                    Train: the experiment
            config.yaml params.json run.json runs.jsonl metrics.csv train.log git.diff
            environment.txt                  the installed packages (``pip freeze``-like)
            annotations.json                 tags and a note (``forge tag``/``note``); no
                                             part of the identity, never reruns a step
            model/  best.*, last.*, best.json, the code-free export
            checkpoints/  epoch-NNNN.<ext> + epoch-NNNN.json sidecars, best-NNNN.<ext>,
                          partial-NNNN.<ext> + .json (a stop inside epoch NNNN)
            tensorboard/
            eval/<eval>-<hash>/              Evaluate: metrics.json, eval.yaml, predictions.h5

The experiment folder's ``.annotations.lock`` serialises ``forge tag``/``note`` (not the
step's ``.lock``, so a running experiment can be tagged).

Every step folder also holds ``.digest`` (its full content digest), ``.lock`` (the
step's lock file) and, once complete, ``_SUCCESS`` (written last).
"""

from __future__ import annotations

__all__ = [
    "ANNOTATIONS_FILE",
    "ANNOTATIONS_LOCK",
    "BEST_RECORD",
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CONFUSION_FILE",
    "CONFUSION_PNG",
    "DATA_CONFIG_FILE",
    "DATA_FILE",
    "DIGEST_FILE",
    "ENVIRONMENT_FILE",
    "EVAL_CONFIG_FILE",
    "EVAL_DIR",
    "EVAL_METRICS_FILE",
    "GIT_DIFF_FILE",
    "INDEX_DIR",
    "INDEX_FILE",
    "INDEX_LOCK_FILE",
    "INITIAL_WEIGHTS",
    "LOCK_FILE",
    "LOG_FILE",
    "META_FILE",
    "METRICS_FILE",
    "MODEL_CONFIG_FILE",
    "MODEL_DIR",
    "MODEL_SUMMARY_FILE",
    "PARAMS_FILE",
    "PREDICTIONS_FILE",
    "RUNS_LOG",
    "RUN_FILE",
    "SUCCESS",
    "SWEEPS_DIR",
    "SWEEP_WORKERS_DIR",
    "SEARCH_JOURNAL",
    "SEARCH_LOCK",
    "SEARCH_TRIALS_DIR",
    "TENSORBOARD_DIR",
]

# Every step folder
SUCCESS = "_SUCCESS"
DIGEST_FILE = ".digest"
LOCK_FILE = ".lock"

# PrepareData
DATA_FILE = "data.h5"
META_FILE = "meta.json"
DATA_CONFIG_FILE = "data.yaml"

# BuildModel
INITIAL_WEIGHTS = "initial"  # + the backend's weights suffix
MODEL_SUMMARY_FILE = "model.json"
MODEL_CONFIG_FILE = "model.yaml"

# Train (the experiment folder)
CONFIG_FILE = "config.yaml"
PARAMS_FILE = "params.json"
RUN_FILE = "run.json"
RUNS_LOG = "runs.jsonl"
METRICS_FILE = "metrics.csv"
LOG_FILE = "train.log"
GIT_DIFF_FILE = "git.diff"
MODEL_DIR = "model"
BEST_RECORD = "best.json"  # inside MODEL_DIR
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
ENVIRONMENT_FILE = "environment.txt"
ANNOTATIONS_FILE = "annotations.json"
ANNOTATIONS_LOCK = ".annotations.lock"

# Evaluate
EVAL_DIR = "eval"
EVAL_METRICS_FILE = "metrics.json"
EVAL_CONFIG_FILE = "eval.yaml"
PREDICTIONS_FILE = "predictions.h5"
# The confusion matrix's counts (Evaluate); the figure is drawn from them by forge report.
# Older evaluations hold the figure itself.
CONFUSION_FILE = "confusion.json"
CONFUSION_PNG = "confusion_matrix.png"

# The results directory
INDEX_DIR = ".forge"
INDEX_FILE = f"{INDEX_DIR}/index.jsonl"
INDEX_LOCK_FILE = f"{INDEX_DIR}/index.lock"
SWEEPS_DIR = "sweeps"
# Inside a sweep's folder: one record per worker command that saw the sweep complete.
SWEEP_WORKERS_DIR = "workers"
# Inside a search's folder: Optuna's journal, the lock every access to it holds, and one
# folder per trial whose lock its running worker holds (so a dead worker's trial is seen).
SEARCH_JOURNAL = "study.journal"
SEARCH_LOCK = ".study.lock"
SEARCH_TRIALS_DIR = "trials"

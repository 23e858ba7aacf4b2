"""The ``[forge]`` section of ``luigi.cfg``."""

from __future__ import annotations

import luigi

from tasks.store.atomic import SYNC_METHODS

__all__ = ["ensure_retcodes", "forge"]


class forge(luigi.Config):  # noqa: N801 - lowercase: a luigi.cfg section, as Luigi's own
    """Project-wide Forge settings, read from ``[forge]`` in ``luigi.cfg``."""

    results_dir = luigi.Parameter(
        default="results",
        description="Where experiments are written when --results-dir is not given.",
    )
    plugins = luigi.Parameter(
        default="",
        description="Comma-separated modules registering loaders, builders, objectives, metrics.",
    )
    buffer_mb = luigi.IntParameter(
        default=1024,
        description="Memory budget (MiB) for streaming a split from data.h5 during Train.",
    )
    max_data_mb = luigi.IntParameter(
        default=0,
        description="Largest array (MiB) a file loader may read into memory; 0: half the RAM.",
    )
    sync = luigi.ChoiceParameter(
        default="auto",
        choices=list(SYNC_METHODS),
        description=(
            "How a step's files are made durable before its marker: 'filesystem' (one "
            "syncfs per round; Linux 5.8+), 'files' (an fsync per file), 'auto' (the first "
            "where available)."
        ),
    )
    lock_timeout = luigi.FloatParameter(
        default=3600.0,
        description="Seconds to wait for another process running the same step before failing.",
    )


# Luigi exits 0 when a task fails unless [retcode] says otherwise; Forge's luigi.cfg sets
# these, and they are applied here too so a run from another folder still fails loudly.
# ``already_running`` is set by :func:`ensure_retcodes` (it depends on Luigi's pid lock).
_RETCODES = {
    "missing_data": "20",
    "not_run": "25",
    "task_failed": "30",
    "scheduling_error": "35",
    "unhandled_exception": "40",
}


def ensure_retcodes() -> None:
    """Fill in the ``[retcode]`` values and Luigi's pid-lock default that no luigi.cfg has set.

    Several identical worker commands on one host must all take work (a Slurm array whose
    tasks share a node), so Luigi's pid lock, which makes the second one exit at once, is
    off unless ``[core] no_lock`` says otherwise; Forge's per-step ``flock`` already keeps
    two processes from running one step. Without the pid lock, Luigi's ``already_running``
    code only means "another worker ran some of the tasks I scheduled", which is how a
    shared sweep works, so it is 0; with the pid lock on it stays 10.
    """
    config = luigi.configuration.get_config()
    for section in ("core", "retcode"):
        if not config.has_section(section):
            config.add_section(section)
    if not config.has_option("core", "no_lock"):
        config.set("core", "no_lock", "true")
    shared = config.getboolean("core", "no_lock", True)
    defaults = {"already_running": "0" if shared else "10", **_RETCODES}
    for key, value in defaults.items():
        if not config.has_option("retcode", key):
            config.set("retcode", key, value)

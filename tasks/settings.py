"""The ``[forge]`` section of ``luigi.cfg``."""

from __future__ import annotations

import luigi

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
    lock_timeout = luigi.FloatParameter(
        default=3600.0,
        description="Seconds to wait for another process running the same step before failing.",
    )


# Luigi exits 0 when a task fails unless [retcode] says otherwise; Forge's luigi.cfg sets
# these, and they are applied here too so a run from another folder still fails loudly.
_RETCODES = {
    "already_running": "10",
    "missing_data": "20",
    "not_run": "25",
    "task_failed": "30",
    "scheduling_error": "35",
    "unhandled_exception": "40",
}


def ensure_retcodes() -> None:
    """Fill in non-zero ``[retcode]`` values that no luigi.cfg has set."""
    config = luigi.configuration.get_config()
    for key, value in _RETCODES.items():
        if not config.has_section("retcode"):
            config.add_section("retcode")
        if not config.has_option("retcode", key):
            config.set("retcode", key, value)

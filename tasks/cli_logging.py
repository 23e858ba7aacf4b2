"""Console behaviour: Forge errors as one clean line, frameworks' start-up noise kept quiet.

Luigi logs every exception with its traceback. For a :class:`ForgeError` (bad config, bad
data, missing framework, ...) the message already says what is wrong and how to fix it,
so the traceback is dropped unless the user asked for ``--log-level DEBUG``.
"""

from __future__ import annotations

import logging
import os

from tasks.errors import ForgeError

__all__ = ["install", "quiet_frameworks"]


def _debug_requested() -> bool:
    """Whether the user asked for DEBUG output.

    ``luigi --log-level DEBUG`` sets the level of Luigi's ``luigi-interface`` logger, not
    the root logger's, so both are asked.
    """
    return any(
        logging.getLogger(name).isEnabledFor(logging.DEBUG) for name in ("luigi-interface", "")
    )


class _ForgeErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ForgeError) and not _debug_requested():
            record.msg = f"{type(exc).__name__}: {exc}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


_installed = False


def install() -> None:
    """Attach the filter to Luigi's loggers (idempotent)."""
    global _installed
    if _installed:
        return
    for name in ("luigi-interface", "luigi", "luigi.worker"):
        logging.getLogger(name).addFilter(_ForgeErrorFilter())
    _installed = True


def quiet_frameworks() -> None:
    """Silence TensorFlow's oneDNN / CUDA / absl start-up messages unless logs are verbose."""
    if _debug_requested():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")

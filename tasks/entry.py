"""What Forge's entry points change about the process, and nothing else does.

Importing the library (``tasks``, its backends) changes nothing global. The two entry
points own their side effects: ``pipelines`` (what ``luigi --module pipelines`` imports)
calls :func:`setup_luigi_command`, and the ``forge`` command calls
:func:`setup_forge_command`. They set:

* Luigi's ``[retcode]`` codes, so a failed task exits non-zero even where no ``luigi.cfg``
  says so;
* the one-line error filter: Luigi logs every exception with its traceback, but for a
  :class:`ForgeError` (bad config, bad data, missing framework, ...) the message already
  says what is wrong and how to fix it, so the traceback is dropped unless the user asked
  for ``--log-level DEBUG``;
* quiet frameworks: TensorFlow's start-up messages off (set before a task imports it), and
  h5py's destructor noise after a failed write (already reported once) dropped;
* a quick exit: the interpreter's shutdown collections skipped (:func:`quick_exit`).
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
from typing import Any

from tasks.errors import ForgeError
from tasks.preemption import forward_to_forked_tasks

__all__ = [
    "install",
    "quick_exit",
    "quiet_frameworks",
    "setup_forge_command",
    "setup_luigi_command",
]


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


def quiet_frameworks(*_: Any) -> None:
    """Silence TensorFlow's oneDNN / CUDA / absl start-up messages unless logs are verbose.

    TensorFlow reads these from the environment when it is imported, so this runs before
    each task starts (a Luigi START event), when the log level is known.
    """
    if _debug_requested():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _drop_h5py_teardown_noise() -> None:
    """After a failed HDF5 write (reported once as a StorageError), h5py objects still
    referenced by the traceback complain again from their destructors ("Exception ignored
    in ObjectID.__dealloc__", "decrement id ref count"); drop exactly those messages."""
    previous_unraisable, previous_except = sys.unraisablehook, sys.excepthook

    def unraisable_hook(unraisable: Any) -> None:
        if "h5py" not in f"{unraisable.object!r} {unraisable.err_msg}":
            previous_unraisable(unraisable)

    def except_hook(kind: Any, value: Any, tb: Any) -> None:
        # Cython prints a destructor's traceback through sys.excepthook as well.
        if "decrement id ref count" not in str(value):
            previous_except(kind, value, tb)

    sys.unraisablehook, sys.excepthook = unraisable_hook, except_hook


def quick_exit() -> None:
    """At interpreter exit, leave every object out of the shutdown's garbage collections.

    CPython runs several full collections while it shuts down, each walking every object
    the process holds; with torch imported that is about 170,000 objects (330,000 in a
    sweep worker), and exiting took 0.5-1.0 s here against 0.15 s with them left out, on
    every command, after its work was done. Registered with :mod:`atexit` by the entry
    points, so it runs after the handlers that frameworks register when a task imports
    them, and before logging's own, which still flushes and closes every log file.

    Nothing Forge keeps depends on those collections: every file is written, synced and
    marked complete before the step returns. Garbage still in reference cycles at exit is
    left to the operating system, so a finalizer (``__del__``) of such an object does not
    run; Python does not promise that at exit either.
    """
    gc.freeze()


_entered = False


def _setup_common() -> None:
    global _entered
    if _entered:
        return
    _entered = True
    install()
    _drop_h5py_teardown_noise()
    atexit.register(quick_exit)


def setup_luigi_command() -> None:
    """Side effects for ``luigi --module pipelines`` (idempotent)."""
    import luigi

    from tasks.settings import ensure_retcodes  # imports Luigi: not for `forge`

    if _entered:
        return
    _setup_common()
    ensure_retcodes()
    luigi.Task.event_handler(luigi.Event.START)(quiet_frameworks)
    forward_to_forked_tasks()


def setup_forge_command() -> None:
    """Side effects for the ``forge`` command (idempotent)."""
    _setup_common()

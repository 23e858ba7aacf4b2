"""Preemption: SIGUSR1 or SIGTERM makes a running Train checkpoint and stop, so it can resume.

Slurm sends a signal before it kills a job (``--signal=B:USR1@120``); preemptible cloud
machines send SIGTERM. While a step runs (:func:`watching`, around ``Train.run`` and a
sweep shard), a handler records the request; the training loop checks it after every
batch (:func:`requests`, a list's truthiness: nothing more per batch), finishes the
current optimizer step (a whole gradient-accumulation group), writes a partial
checkpoint of the unfinished epoch and raises :class:`~tasks.errors.PreemptedError`, so
the command exits non-zero within about one batch plus the checkpoint's write. A rerun
resumes from that checkpoint at the next batch, in the same order (with torch on CPU
its final weights equal an uninterrupted run's, bit for bit). A signal during an
epoch's last batch or its validation stops at the epoch's end instead (a whole-epoch
checkpoint). A shard stops before its next experiment.

Luigi's worker takes SIGUSR1 to mean "ask for no new tasks". The handler calls the
handler it replaced, so that meaning is kept when the worker and the task share a process
(``--workers 1``). The request, once received, stays for the life of the process: a
process asked to stop does not start new training either, and the handlers stay too. With
forked task processes (``--workers N``), the command's own process passes SIGTERM on to
them (:func:`forward_to_forked_tasks`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator, Sized
from types import FrameType
from typing import Any

__all__ = [
    "SIGNALS",
    "forward_to_forked_tasks",
    "received",
    "requests",
    "stop_requested",
    "watching",
]

SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

_received: list[str] = []


def received() -> str | None:
    """The name of the first stop signal this process received, if any."""
    return _received[0] if _received else None


def stop_requested() -> bool:
    """Whether this process was asked to stop."""
    return bool(_received)


def requests() -> Sized:
    """The live record of stop requests: non-empty once one arrived.

    The training loop keeps it and tests its truthiness after every batch, the cheapest
    check there is (no call, no lock).
    """
    return _received


def _handler(previous: Any) -> Any:
    def handle(signum: int, frame: FrameType | None) -> None:
        _received.append(signal.Signals(signum).name)
        # Luigi's SIGUSR1 handler: the worker takes no new tasks. Not the command's
        # forwarder (forward_to_forked_tasks): this process is the one that stops.
        if callable(previous) and not getattr(previous, "forwards", False):
            previous(signum, frame)

    return handle


@contextlib.contextmanager
def watching() -> Iterator[None]:
    """Record SIGUSR1/SIGTERM for the block (a no-op outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _handler(previous[sig]))
        signal.siginterrupt(sig, False)  # as Luigi does: system calls are not interrupted
    try:
        yield
    finally:
        # After a stop request the handlers stay: the process is on its way out, and a
        # second signal (Slurm and shells often send more than one) must not kill it with
        # the signal's default action before it exits with its own code.
        if not _received:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def forward_to_forked_tasks() -> None:
    """In the ``luigi`` command's own process: pass SIGTERM on to its forked task processes.

    With ``--workers N`` > 1 the command's process only schedules; the steps run in
    processes Luigi forked. A SIGTERM sent to the command alone (``kill``, a container's
    stop, a cloud machine's shutdown of the main process) used to end it at once and leave
    those processes training on their own. Now, while forked task processes run, it is
    passed on to each (which checkpoint and exit, as above), the command takes no new
    tasks (what Luigi's worker does on SIGUSR1), waits for them and exits non-zero. A
    process with no forked task running (``--workers 1``, or between tasks) keeps what
    SIGTERM did before; forked processes inherit the handler and keep it too.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    command = os.getpid()
    previous = signal.getsignal(signal.SIGTERM)

    def handle(signum: int, frame: FrameType | None) -> None:
        children = multiprocessing.active_children() if os.getpid() == command else []
        if not children:
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        _received.append(signal.Signals(signum).name)
        for child in children:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(child.pid, signum)  # type: ignore[arg-type]
        stop_taking_tasks = signal.getsignal(signal.SIGUSR1)  # Luigi's worker's handler
        if callable(stop_taking_tasks):
            stop_taking_tasks(signal.SIGUSR1, frame)

    handle.forwards = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, handle)
    signal.siginterrupt(signal.SIGTERM, False)

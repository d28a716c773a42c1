"""A local search stopped by Ctrl-C or SIGTERM ends its MLflow parent run as KILLED, not RUNNING forever.

Ctrl-C reaches the whole foreground process group, so the step subprocesses of ``kfp.local``
stop with the runner; SIGTERM reaches only the runner, which passes it on to its own child
processes (``/proc/self/task/*/children``, Linux) before raising ``KeyboardInterrupt`` where
Ctrl-C would (``Terminated``, so the command can still tell the two apart). On a cluster the
pipeline's exit handler (``steps.close``) does this instead.

Exit codes follow the shell's 128 + signal number: 130 after Ctrl-C (SIGINT), 143 after SIGTERM
(``exit_code``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from prednas.errors import PredNASError

log = logging.getLogger(__name__)


class Terminated(KeyboardInterrupt):
    """SIGTERM raised where Ctrl-C raises ``KeyboardInterrupt``; it unwinds the same way."""

    signum = signal.SIGTERM


def exit_code(interrupt: BaseException | None) -> int:
    """128 + the signal that stopped the command: 143 for ``Terminated``, else 130 (Ctrl-C)."""
    return 128 + int(getattr(interrupt, "signum", signal.SIGINT))


def _children() -> list[int]:
    """Process ids of this process's children (every thread's); none where /proc does not list them."""
    pids: set[int] = set()
    for listing in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.update(int(pid) for pid in listing.read_text().split())
    return sorted(pids)


def _on_sigterm(signum: int, frame: object) -> None:
    for pid in _children():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM stops the children and raises ``Terminated`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def end_killed(tracking_uri: str, experiment: str, run_key: str) -> str | None:
    """End the parent run of ``run_key`` as KILLED if one was opened; returns its id (None if none was)."""
    from prednas.pipeline.exchange import RunRef

    try:
        tracker = RunRef("", tracking_uri, experiment).tracker()
        parent = tracker.find_parent(run_key)
        if parent is not None:
            tracker.close(parent, "KILLED")
        return parent
    except PredNASError as exc:  # the interrupt is what the user sees; the tracking failure is logged
        log.warning("could not end the MLflow run of %s as KILLED: %s", run_key, exc)
        return None

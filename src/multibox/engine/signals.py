"""SIGTERM (what schedulers and `docker stop` send) stops training the way Ctrl-C does: the loop saves a
checkpoint on the way out, so a preempted job loses at most the steps since its last log line."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from multibox.errors import Interrupted


def _raise_interrupted(signum: int, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`multibox.errors.Interrupted` (a KeyboardInterrupt) in the
    main thread; signal handlers can only be set there, so elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

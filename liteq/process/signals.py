"""The signals a pool handles, blocked while the supervisor forks a child.

A child inherits its parent's handlers until it installs its own; blocking the signals
around ``fork`` (the child unblocks them once its handlers are in place) means none is
handled by the supervisor's code in the child.
"""

from __future__ import annotations

import signal
from typing import Any

POOL_SIGNALS = {signal.SIGTERM, signal.SIGINT}
if hasattr(signal, "SIGHUP"):  # not on Windows
    POOL_SIGNALS.add(signal.SIGHUP)


def block_signals(how: int, signals: Any) -> Any:
    """``pthread_sigmask(how, signals)`` where it exists; returns the previous mask."""
    if hasattr(signal, "pthread_sigmask"):
        return signal.pthread_sigmask(how, signals)
    return set()

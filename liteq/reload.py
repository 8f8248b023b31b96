"""``liteq worker --watch``: poll ``*.py`` files and ask the supervisor to reload on a change.

Polling (once a second) needs no extra dependency and works on every platform; the
supervisor treats the SIGHUP this sends exactly like one from ``kill -HUP``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

logger = logging.getLogger("liteq.pool")


class Watcher(threading.Thread):
    """Polls ``*.py`` modification times under some directories; sends SIGHUP on a change."""

    SKIP = {"__pycache__", "node_modules", "venv", "site-packages"}

    def __init__(self, directories: list[str], interval: float = 1.0) -> None:
        super().__init__(name="liteq-watch", daemon=True)
        self.directories = [os.path.abspath(d) for d in directories]
        self.interval = interval
        self.stopped = threading.Event()

    def snapshot(self) -> dict[str, int]:
        """Modification time (ns) of every watched ``.py`` file, by path."""
        seen: dict[str, int] = {}
        for top in self.directories:
            for root, dirs, files in os.walk(top):
                dirs[:] = [d for d in dirs if not d.startswith(".") and d not in self.SKIP]
                for name in files:
                    if name.endswith(".py"):
                        path = os.path.join(root, name)
                        with contextlib.suppress(OSError):
                            seen[path] = os.stat(path).st_mtime_ns
        return seen

    def run(self) -> None:
        before = self.snapshot()
        while not self.stopped.wait(self.interval):
            now = self.snapshot()
            if now != before:
                changed = sorted(p for p in set(now) | set(before) if now.get(p) != before.get(p))
                logger.info("code changed (%s); reloading the worker processes",
                            ", ".join(os.path.relpath(p) for p in changed[:3]))
                os.kill(os.getpid(), signal.SIGHUP)
            before = now

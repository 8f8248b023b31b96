"""Logging of ``liteq worker``: one line format for the supervisor and its processes."""

from __future__ import annotations

import logging
import sys

from ..support.text import safe

LOG_FORMAT = (
    "[%(asctime)s] [PID %(process)d] [%(threadName)s] [%(name)s] [%(levelname)s] %(message)s"
)


class SafeFormatter(logging.Formatter):
    """The usual line, with control characters (from messages and errors) shown as escapes."""

    def format(self, record: logging.LogRecord) -> str:
        return safe(super().format(record), multiline=True)


def setup_logging(verbose: bool = False, log_file: str | None = None) -> None:
    """Log ``[time] [PID n] [thread] [logger] [LEVEL] msg`` to stderr or append to a file."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)

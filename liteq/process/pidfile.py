"""``liteq worker --pid-file``: write the supervisor's pid, refusing a file a live process owns."""

from __future__ import annotations

import contextlib
import logging
import os

from ..errors import PidFileError

logger = logging.getLogger("liteq.pool")


def _alive(pid: int) -> bool:
    import psutil  # here: the supervisor imports this module, and psutil takes ~25 ms

    return bool(psutil.pid_exists(pid))


def write_pid_file(path: str) -> None:
    """Write our pid to ``path``; a stale pid is replaced, a live one or garbage refused."""
    path = os.path.abspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            content = f.read().strip()
    except FileNotFoundError:
        content = None
    except OSError as e:
        raise PidFileError(f"cannot read pid file {path}: {e.strerror}") from e
    if content:
        try:
            pid = int(content)
        except ValueError:
            raise PidFileError(f"pid file {path} does not contain a pid: {content[:40]!r}"
                               ) from None
        if pid != os.getpid() and _alive(pid):
            raise PidFileError(f"pid file {path} names process {pid}, which is running; "
                               "is another liteq worker using it?")
        logger.info("replacing the stale pid file %s (process %d is gone)", path, pid)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as e:
        raise PidFileError(f"cannot write pid file {path}: {e.strerror}") from e


def remove_pid_file(path: str) -> None:
    """Remove ``path`` if it still holds our pid."""
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="utf-8") as f:
            if int(f.read().strip()) != os.getpid():
                return
        os.unlink(path)

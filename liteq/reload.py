"""``liteq worker --watch``: ask the supervisor to reload when a watched file changes.

A file counts when it matches an include pattern (``*.py`` always, plus
``--watch-include``) and no ``--watch-exclude`` pattern; patterns match the end of
the path (``PurePath.match``, as Dramatiq's watchdog handler does). On Linux the
directories are watched with inotify (a reload within ~0.1 s of the write, no CPU
while idle); with ``--watch-use-polling``, or elsewhere, modification times are
polled once a second, which also works on network and container file systems that
send no events. The supervisor treats the SIGHUP this sends like one from ``kill -HUP``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import struct
import threading
from collections.abc import Iterable
from pathlib import PurePath

from .wakeup import _inotify

logger = logging.getLogger("liteq.pool")

#: Directories never watched.
SKIP = {"__pycache__", "node_modules", "venv", "site-packages"}

_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_Q_OVERFLOW = 0x4000
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_MASK = (_IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE
         | _IN_DELETE)
_EVENT = struct.Struct("iIII")
#: After a first event, how long to collect more (an editor's save is several events).
SETTLE = 0.1


def _walk(top: str) -> Iterable[tuple[str, list[str]]]:
    """``(directory, file names)`` under ``top``, skipping hidden and :data:`SKIP` ones."""
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP]
        yield root, files


class _Inotify:
    """Events of every directory under some tops (new directories are added as they appear)."""

    def __init__(self, fd: int, tops: list[str]) -> None:
        self.fd = fd
        self.paths: dict[int, str] = {}
        #: A directory could not be watched (e.g. fs.inotify.max_user_watches reached).
        self.incomplete = False
        for top in tops:
            self._add(top)

    @classmethod
    def open(cls, tops: list[str]) -> _Inotify | None:
        libc = _inotify()
        if libc is None:
            return None
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        return None if fd < 0 else cls(fd, tops)

    def _add(self, top: str) -> None:
        libc = _inotify()
        assert libc is not None
        for root, _ in _walk(top):
            wd = libc.inotify_add_watch(self.fd, os.fsencode(root), _MASK)
            if wd >= 0:
                self.paths[wd] = root
            elif not self.incomplete:
                self.incomplete = True
                logger.warning("cannot watch %s with inotify (errno %d; see "
                               "fs.inotify.max_user_watches)", root, ctypes.get_errno())

    def read(self, timeout: float) -> list[str] | None:
        """Paths that changed within ``timeout`` s (None: too many events, rescan all)."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        data = b""
        with contextlib.suppress(BlockingIOError):
            data = os.read(self.fd, 65536)
        changed: list[str] = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                return None
            if wd not in self.paths or not raw:
                continue
            path = os.path.join(self.paths[wd], os.fsdecode(raw))
            if mask & _IN_ISDIR:
                name = os.path.basename(path)
                if mask & (_IN_CREATE | _IN_MOVED_TO) and not name.startswith(".") \
                        and name not in SKIP:
                    self._add(path)
                    changed += [os.path.join(root, f) for root, files in _walk(path)
                                for f in files]
                continue
            changed.append(path)
        return changed

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Watcher(threading.Thread):
    """Sends SIGHUP to this process when a matching file under ``directories`` changes."""

    def __init__(self, directories: list[str], *, include: Iterable[str] = (),
                 exclude: Iterable[str] = (), use_polling: bool = False,
                 interval: float = 1.0) -> None:
        super().__init__(name="liteq-watch", daemon=True)
        self.directories = [os.path.abspath(d) for d in directories]
        self.include = ["*.py", *include]
        self.exclude = list(exclude)
        self.interval = interval
        self.stopped = threading.Event()
        self._events = None if use_polling else _Inotify.open(self.directories)
        if self._events is not None and self._events.incomplete:
            logger.warning("watching by polling instead")
            self._events.close()
            self._events = None
        self._before = self.snapshot() if self._events is None else {}

    @property
    def polling(self) -> bool:
        """True when modification times are polled (no inotify)."""
        return self._events is None

    def matches(self, path: str) -> bool:
        """Whether a change of ``path`` triggers a reload."""
        pure = PurePath(path)
        return any(pure.match(p) for p in self.include) and \
            not any(pure.match(p) for p in self.exclude)

    def snapshot(self) -> dict[str, int]:
        """Modification time (ns) of every matching file, by path."""
        seen: dict[str, int] = {}
        for top in self.directories:
            for root, files in _walk(top):
                for name in files:
                    path = os.path.join(root, name)
                    if self.matches(path):
                        with contextlib.suppress(OSError):
                            seen[path] = os.stat(path).st_mtime_ns
        return seen

    def changes(self, timeout: float) -> list[str]:
        """The matching files that changed, waiting up to ``timeout`` s for one."""
        if self._events is None:
            if self.stopped.wait(timeout):
                return []
            now = self.snapshot()
            before, self._before = self._before, now
            return sorted(p for p in set(now) | set(before) if now.get(p) != before.get(p))
        paths = self._events.read(timeout)
        while paths:
            more = self._events.read(SETTLE)
            if not more:
                paths = more if more is None else paths
                break
            paths += more
        if paths is None:
            return list(self.directories)
        return sorted({p for p in paths if self.matches(p)})

    def run(self) -> None:
        logger.info("watching %s for changes (%s)", ", ".join(self.directories),
                    "polling once a second" if self.polling else "inotify")
        try:
            while not self.stopped.is_set():
                changed = self.changes(self.interval)
                if changed and not self.stopped.is_set():
                    logger.info("code changed (%s); reloading the worker processes",
                                ", ".join(os.path.relpath(p) for p in changed[:3]))
                    os.kill(os.getpid(), signal.SIGHUP)
        finally:
            if self._events is not None:
                self._events.close()

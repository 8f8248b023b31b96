"""Waking idle consumers within about a millisecond of a commit, without burning CPU.

On Linux, inotify on the database's directory reports every write to the ``-wal``
file, including commits of other processes; a wake-up is then confirmed by the
caller (``PRAGMA data_version``), since our own writes fire it too. Watching the
directory rather than the file survives the ``-wal`` file being deleted and made
again. Elsewhere (or with ``LITEQ_WAKEUP=poll``) the waiter polls a cheap change
check every ``poll_interval`` seconds instead. Another thread can always cut a wait
short through a self-pipe.
"""

from __future__ import annotations

import os
import select
import struct
import time
from collections.abc import Callable

from ...support.inotify import inotify_libc as _inotify

_IN_MODIFY = 0x00000002
_IN_CREATE = 0x00000100
_IN_MOVED_TO = 0x00000080
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")
_RECHECK_WINDOW = 0.01
_RECHECK_STEP = 0.0002

def inotify_available() -> bool:
    """True when this platform offers inotify and it is not disabled by ``LITEQ_WAKEUP``."""
    return os.environ.get("LITEQ_WAKEUP", "auto") != "poll" and _inotify() is not None


class Waiter:
    """Blocks until the database file changes, ``wakeup()`` is called, or a timeout."""

    def __init__(self, db_path: str, changed: Callable[[], bool], *,
                 poll_interval: float = 0.002) -> None:
        self.changed = changed
        self.poll_interval = poll_interval
        self._prefix = os.path.basename(db_path).encode()
        self._rpipe, self._wpipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._notify_fd = -1
        self._poller = select.poll()
        self._poller.register(self._rpipe, select.POLLIN)
        if inotify_available():
            libc = _inotify()
            assert libc is not None
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            directory = os.path.dirname(os.path.abspath(db_path)).encode()
            mask = _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
            if fd >= 0 and libc.inotify_add_watch(fd, directory, mask) >= 0:
                self._notify_fd = fd
                self._poller.register(fd, select.POLLIN)
            elif fd >= 0:
                os.close(fd)

    @property
    def uses_inotify(self) -> bool:
        return self._notify_fd >= 0

    def wakeup(self) -> None:
        """Make a concurrent ``wait`` return now (thread-safe, cheap)."""
        try:
            os.write(self._wpipe, b"\0")
        except BlockingIOError:
            pass

    def _drain(self, fd: int) -> bytes:
        chunks = []
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except BlockingIOError:
            pass
        return b"".join(chunks)

    def _ours(self, events: bytes) -> bool:
        offset = 0
        while offset + _EVENT.size <= len(events):
            _, _, _, length = _EVENT.unpack_from(events, offset)
            name = events[offset + _EVENT.size: offset + _EVENT.size + length]
            if name.startswith(self._prefix):
                return True
            offset += _EVENT.size + length
        return False

    def wait(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` s; return ``"change"``, ``"wakeup"`` or None on timeout.

        A writer appends to the ``-wal`` file before it publishes the commit, so an
        event that is not yet visible as a change is re-checked for a few ms.
        """
        deadline = time.monotonic() + timeout
        recheck_until = 0.0
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return None
            if self._notify_fd < 0:
                remaining = min(remaining, self.poll_interval)
            elif now < recheck_until:
                remaining = min(remaining, _RECHECK_STEP)
            ready = self._poller.poll(remaining * 1000)
            for fd, _ in ready:
                if fd == self._rpipe:
                    self._drain(fd)
                    return "wakeup"
            if self._notify_fd < 0 or now < recheck_until:
                if self.changed():
                    return "change"
            if ready and self._ours(self._drain(self._notify_fd)):
                if self.changed():
                    return "change"
                recheck_until = time.monotonic() + _RECHECK_WINDOW

    def sleep(self, timeout: float) -> bool:
        """Sleep ``timeout`` s ignoring file changes; True if ``wakeup()`` cut it short."""
        if select.select([self._rpipe], [], [], timeout)[0]:
            self._drain(self._rpipe)
            return True
        if self._notify_fd >= 0:
            self._drain(self._notify_fd)
        return False

    def close(self) -> None:
        for fd in (self._rpipe, self._wpipe, self._notify_fd):
            if fd >= 0:
                os.close(fd)
        self._rpipe = self._wpipe = self._notify_fd = -1

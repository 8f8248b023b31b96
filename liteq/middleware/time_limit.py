"""TimeLimit: interrupt actors that run too long, so a stuck task cannot hold a thread forever."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import TimeLimitExceeded
from ..options import check_defaults, owned_by, resolve
from .middleware import Middleware
from .threading import raise_thread_exception

if TYPE_CHECKING:
    from ..broker import Broker, MessageProxy

logger = logging.getLogger("liteq.middleware.TimeLimit")


@dataclass
class _Running:
    """One message being processed by a worker thread, with its monotonic deadline."""

    deadline: float
    message_id: str
    actor_name: str
    interrupted: bool = False


class TimeLimit(Middleware):
    """Raises ``TimeLimitExceeded`` in a worker thread whose actor outlives ``time_limit`` ms.

    One daemon watchdog thread per process checks every ``interval`` ms. The exception
    is delivered at the thread's next bytecode, so C code and blocking system calls are
    not interrupted; :meth:`overrunning` lets a supervisor find such threads.
    ``float("inf")`` disables the limit.
    """

    def __init__(self, *, time_limit: float = 600000, interval: int = 1000) -> None:
        check_defaults(time_limit=time_limit)
        self.time_limit = time_limit
        self.interval = interval
        self._pid = 0
        self._lock = threading.Lock()
        self._running: dict[int, _Running] = {}
        self._workers = 0
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    @property
    def actor_options(self) -> set[str]:
        return owned_by("TimeLimit")

    def _ensure_watchdog(self) -> None:
        """Start the watchdog unless it runs in this process (a forked child starts its own)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._running = {}
            self._watchdog = None
        with self._lock:
            alive = self._watchdog is not None and self._watchdog.is_alive()
            if alive and not self._stop.is_set():
                return
            self._stop = threading.Event()
            self._watchdog = threading.Thread(
                target=self._watch, args=(self._stop,), name="liteq-time-limit", daemon=True
            )
            self._watchdog.start()

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval / 1000):
            self._interrupt_overrunning(time.monotonic())

    def _interrupt_overrunning(self, now: float) -> None:
        with self._lock:
            for thread_id, running in self._running.items():
                if running.interrupted or now < running.deadline:
                    continue
                running.interrupted = True
                logger.warning(
                    "time limit exceeded for %s on message %s; interrupting it",
                    running.actor_name, running.message_id,
                )
                try:
                    raise_thread_exception(thread_id, TimeLimitExceeded)
                except ValueError:
                    logger.debug("thread %d ended before it could be interrupted", thread_id)

    def overrunning(self, now: float | None = None) -> list[tuple[int, str, float]]:
        """``(thread_ident, message_id, seconds_over)`` for each thread past its deadline.

        ``now`` is a ``time.monotonic()`` reading (default: the current one). A thread that
        stays listed after being interrupted is stuck where Python cannot reach it.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            return [
                (thread_id, r.message_id, now - r.deadline)
                for thread_id, r in self._running.items()
                if now >= r.deadline
            ]

    def after_process_boot(self, broker: Broker) -> None:
        self._ensure_watchdog()

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._workers += 1
        self._ensure_watchdog()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._workers -= 1
        if self._workers <= 0:
            self._stop.set()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        actor = broker.get_actor(message.actor_name)
        limit = resolve("time_limit", message.options, actor.options, self.time_limit)
        if not limit or math.isinf(limit):
            return
        if self._pid != os.getpid():
            self._ensure_watchdog()
        running = _Running(time.monotonic() + limit / 1000, message.message_id, actor.actor_name)
        with self._lock:
            self._running[threading.get_ident()] = running

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            self._running.pop(threading.get_ident(), None)

    after_skip_message = after_process_message

"""ShutdownNotifications: tell opted-in actors the worker is stopping, so they stop early."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ..errors import Shutdown
from ..options import check_defaults, owned_by, resolve
from .middleware import Middleware
from .threading import raise_thread_exception

if TYPE_CHECKING:
    from ..broker import Broker, MessageProxy

logger = logging.getLogger("liteq.middleware.ShutdownNotifications")


class ShutdownNotifications(Middleware):
    """Raises ``Shutdown`` in the threads running actors with ``notify_shutdown`` set.

    Actors that do not opt in are left to finish within the worker's stop timeout.
    """

    def __init__(self, notify_shutdown: bool = False) -> None:
        check_defaults(notify_shutdown=notify_shutdown)
        self.notify_shutdown = notify_shutdown
        self._lock = threading.Lock()
        self._threads: dict[int, str] = {}

    @property
    def actor_options(self) -> set[str]:
        return owned_by("ShutdownNotifications")

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        actor = broker.get_actor(message.actor_name)
        notify = resolve("notify_shutdown", message.options, actor.options, self.notify_shutdown)
        if notify:
            with self._lock:
                self._threads[threading.get_ident()] = message.message_id

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if self._threads:  # empty unless some actor asked to be notified
            with self._lock:
                self._threads.pop(threading.get_ident(), None)

    after_skip_message = after_process_message

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        with self._lock:
            for thread_id, message_id in self._threads.items():
                logger.info("notifying message %s of the worker shutdown", message_id)
                try:
                    raise_thread_exception(thread_id, Shutdown)
                except ValueError:
                    logger.debug("thread %d ended before it could be notified", thread_id)
            self._threads.clear()

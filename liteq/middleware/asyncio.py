"""AsyncIO: gives the worker an event-loop thread for ``async def`` actors."""

from __future__ import annotations

from typing import Any

from ..asyncio import EventLoopThread, get_event_loop_thread, set_event_loop_thread
from .middleware import Middleware


class AsyncIO(Middleware):
    """Starts the event-loop thread at worker boot and stops it at shutdown."""

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        if get_event_loop_thread() is None:
            thread = EventLoopThread(broker.logger)
            thread.start(timeout=10)
            set_event_loop_thread(thread)

    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        thread = get_event_loop_thread()
        if thread is not None:
            thread.stop()
            set_event_loop_thread(None)

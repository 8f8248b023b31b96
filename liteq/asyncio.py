"""One event-loop thread per worker process, on which ``async def`` actors run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from .errors import Interrupt

P = ParamSpec("P")
T = TypeVar("T")

_loop_thread: EventLoopThread | None = None


class EventLoopThread(threading.Thread):
    """Runs an asyncio loop in a daemon thread; worker threads block on its futures."""

    def __init__(self, logger: logging.Logger | None = None,
                 interrupt_check_ival: float = 0.1) -> None:
        super().__init__(name="liteq-event-loop", daemon=True)
        self.logger = logger or logging.getLogger("liteq.asyncio")
        self.loop = asyncio.new_event_loop()
        self.interrupt_check_ival = interrupt_check_ival
        self._ready = threading.Event()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()
        self.loop.close()

    def start(self, *, timeout: float | None = None) -> None:
        super().start()
        if not self._ready.wait(timeout):
            raise RuntimeError("event loop thread did not start in time")

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(timeout=5)

    def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait; an Interrupt cancels it, waits up to 1 s
        for its cleanup, and is re-raised."""
        finished = threading.Event()

        async def runner() -> T:
            try:
                return await coro
            finally:
                finished.set()

        future = asyncio.run_coroutine_threadsafe(runner(), self.loop)
        try:
            while True:
                try:
                    return future.result(timeout=self.interrupt_check_ival)
                except concurrent.futures.TimeoutError:
                    continue
        except Interrupt:
            self.loop.call_soon_threadsafe(future.cancel)
            finished.wait(1.0)
            raise


def get_event_loop_thread() -> EventLoopThread | None:
    return _loop_thread


def set_event_loop_thread(thread: EventLoopThread | None) -> None:
    global _loop_thread
    _loop_thread = thread


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the worker's loop thread, or with ``asyncio.run`` outside a worker."""
    thread = _loop_thread
    if thread is None:
        return asyncio.run(coro)
    return thread.run_coroutine(coro)


def async_to_sync(async_fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Wrap ``async_fn`` into a function that runs it to completion (see ``run_coroutine``)."""

    @functools.wraps(async_fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_coroutine(async_fn(*args, **kwargs))

    return wrapper

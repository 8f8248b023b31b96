"""An in-memory broker for unit tests, with the same ordering rules as the SQLite broker."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from ..broker import Broker, Consumer, MessageProxy
from ..common import current_millis
from ..errors import DecodeError
from ..message import Message
from ..middleware.middleware import Middleware


class StubBroker(Broker):
    """Queues in memory: priority (larger first), then ETA, then FIFO; dead letters in a list."""

    def __init__(self, middleware: list[Middleware] | None = None, *,
                 fail_fast_default: bool = True) -> None:
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._unfinished: dict[str, int] = defaultdict(int)
        self.dead_letters_by_queue: dict[str, list[MessageProxy]] = defaultdict(list)
        super().__init__(middleware)
        self.fail_fast_default = fail_fast_default

    def _create_queue(self, queue_name: str) -> list[Any]:
        return []

    default_timeout = 100

    def _write(self, message: Message[Any], eta: int, priority: int, delay: int | None) -> None:
        body = message.encode()
        with self._cond:
            heapq.heappush(self.queues[message.queue_name],
                           (-priority, eta, next(self._seq), body))
            self._unfinished[message.queue_name] += 1
            self._cond.notify_all()

    def _consume(self, queue_names: list[str], *, prefetch: int,
                 timeout: int) -> StubConsumer:
        return StubConsumer(self, queue_names, timeout)

    def flush(self, queue_name: str) -> None:
        with self._cond:
            heap = self.queues[queue_name]
            self._unfinished[queue_name] -= len(heap)
            heap.clear()
            self._cond.notify_all()

    def flush_all(self) -> None:
        for name in self.queues:
            self.flush(name)
        self.dead_letters_by_queue.clear()

    @property  # Dramatiq's StubBroker gives the dead-lettered proxies, not bare messages
    def dead_letters(self) -> list[MessageProxy]:  # type: ignore[override]
        return [p for proxies in self.dead_letters_by_queue.values() for p in proxies]

    def _queue_busy(self, queue_name: str) -> bool:
        return self._unfinished[queue_name] > 0

    def _first_failure(self, queue_name: str) -> BaseException | None:
        for proxy in self.dead_letters_by_queue.get(queue_name, ()):
            return proxy._exception or Exception("Message failed with unknown error")
        return None


class StubConsumer(Consumer):
    """Pops due messages off the in-memory heaps."""

    def __init__(self, broker: StubBroker, queue_names: list[str], timeout: int) -> None:
        self.broker = broker
        self.queue_names = queue_names
        self.timeout = timeout

    def poll(self) -> MessageProxy | None:
        broker = self.broker
        now = current_millis()
        with broker._cond:
            best = None
            for name in self.queue_names:
                heap = broker.queues[name]
                due = [item for item in heap if item[1] <= now]
                if due:
                    item = min(due)
                    if best is None or item < best[0]:
                        best = (item, name)
            if best is None:
                return None
            item, name = best
            heap = broker.queues[name]
            heap.remove(item)
            heapq.heapify(heap)
        try:
            proxy = MessageProxy(Message.decode(item[3]), handle=(name, item))
        except DecodeError as e:
            with broker._cond:
                broker._unfinished[name] -= 1
                broker._cond.notify_all()
            broker.logger.error("dropping undecodable message on %s: %s", name, e)
            return None
        return proxy

    def add_queue(self, queue_name: str) -> None:
        if queue_name not in self.queue_names:
            self.queue_names = [*self.queue_names, queue_name]
            self.wakeup()

    def wait(self, timeout: float) -> None:
        with self.broker._cond:
            self.broker._cond.wait(timeout)

    def wakeup(self) -> None:
        with self.broker._cond:
            self.broker._cond.notify_all()

    def _settle(self, proxy: MessageProxy) -> None:
        with self.broker._cond:
            self.broker._unfinished[proxy.handle[0]] -= 1
            self.broker._cond.notify_all()

    def ack(self, message: MessageProxy) -> None:
        self._settle(message)

    def nack(self, message: MessageProxy) -> None:
        self.broker.dead_letters_by_queue[message.handle[0]].append(message)
        self._settle(message)

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        with self.broker._cond:
            for proxy in messages:
                name, item = proxy.handle
                heapq.heappush(self.broker.queues[name], item)
            self.broker._cond.notify_all()

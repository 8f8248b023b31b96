"""The Redis broker's consumer: one script call acknowledges finished messages and
fetches the next batch; it holds delayed messages in memory until due, and idles on
``BLPOP`` instead of polling.

The same calls keep liteq's own figures (see :mod:`liteq.brokers.redis.inspect`): acks
and nacks add to the queue's lifetime counters inside the script, and about once a
second the call also publishes this consumer's worker registry entry.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import redis

from ...broker import BatchConsumer, MessageProxy
from ...common import current_millis, dq_name, q_name
from ...errors import DecodeError
from ...message import Message
from ..failure import dead_letter_body

if TYPE_CHECKING:
    # Type-only, and mutual by nature: the broker builds its consumers, which use it.
    from .broker import RedisBroker

#: Delayed messages a consumer holds in memory at most (Dramatiq holds up to 65,535).
MAX_HELD_DELAYED = 10000
#: Longest single blocking call while idle (below redis-py's 5 s default socket timeout).
MAX_BLOCK = 1.0
#: Seconds between two publications of a consumer's worker registry entry.
REGISTRY_INTERVAL = 1.0
HOST = socket.gethostname()


class RedisConsumer(BatchConsumer):
    """Fetches from several queues in batches; holds delayed messages until their ETA.

    Not thread-safe except :meth:`wakeup`. An idle consumer blocks (``BLPOP``) on the
    notification lists its queues' enqueues push to and on its private wake-up list.
    """

    def __init__(self, broker: RedisBroker, queue_names: list[str], *, prefetch: int,
                 timeout: int) -> None:
        self.broker = broker
        self.prefetch = prefetch
        self.timeout = timeout
        self.worker_id = broker.broker_id
        self._wake_key = f"{broker.namespace}:__liteq__.wake.{uuid.uuid4()}"
        self._set_queues(list(queue_names))
        self._held: list[tuple[int, int, MessageProxy]] = []
        self._seq = itertools.count()
        self._bad: list[tuple[str, str]] = []
        self._rotation = 0
        self._hungry = True
        self._lock = threading.Lock()
        self._blocking = False
        self._woken = False
        self._closed = False
        #: What the worker registry publishes (``Worker.describe``); set by the worker.
        self.describe: Callable[[], dict[str, Any]] = dict
        self.started_at = current_millis()
        self._beat_at = 0.0

    def _set_queues(self, queue_names: list[str]) -> None:
        """Consume ``queue_names``: every list a round trip or a wait reads, rebound."""
        ns = self.broker.namespace
        self.delay_names = [dq_name(q) for q in queue_names]
        self._notify_keys = [f"{ns}:__liteq__.notify.{q}" for q in queue_names]
        self._all_queues = [n for q in queue_names for n in (q, dq_name(q))]
        self.queue_names = queue_names

    def add_queue(self, queue_name: str) -> None:
        if queue_name not in self.queue_names:
            self._set_queues([*self.queue_names, queue_name])
            self._hungry = True
            self.wakeup()

    # -- the registry -----------------------------------------------------------------------
    def _entry_due(self) -> str | None:
        """This consumer's registry entry as JSON when it is due again, else None."""
        now = time.monotonic()
        if now < self._beat_at:
            return None
        self._beat_at = now + REGISTRY_INTERVAL
        entry = dict(self.describe())
        entry.update(owner=self.worker_id, pid=os.getpid(), host=HOST,
                     queues=list(self.queue_names), started_at=self.started_at,
                     heartbeat_at=current_millis())
        return json.dumps(entry, default=str)

    # -- the round trip ---------------------------------------------------------------------
    def _settle_op(self, proxy: MessageProxy) -> list[Any]:
        """The script's ack or nack of ``proxy``: a nack keeps the body with why it died;
        an ack says whether the attempt raised (and was retried)."""
        queue, rid = proxy.handle
        if proxy.failed:
            return ["N", queue, rid, self._dead_body(proxy), "1"]
        return ["A", queue, rid, "0" if proxy._exception is None else "1"]

    def _dead_body(self, proxy: MessageProxy) -> bytes | str:
        """The body to dead-letter ``proxy`` with; '' (the body as enqueued) when the
        message in hand no longer encodes (a middleware put something odd in it)."""
        try:
            return dead_letter_body(proxy)
        except Exception as e:
            self.broker.logger.error("dead-lettering message %s as it was enqueued: it no "
                                     "longer encodes (%s: %s)", proxy.message_id,
                                     type(e).__name__, e)
            return ""

    def exchange(self, done: list[MessageProxy], want: int) -> list[MessageProxy]:
        """Ack/nack ``done``, move due delayed messages, fetch up to ``want``: one call."""
        ops: list[Any] = []
        broker = self.broker
        for proxy in done:
            ops += self._settle_op(proxy)
            if proxy.failed and proxy._exception is not None:
                broker.record_failure(proxy.handle[0], proxy._exception)
        for queue, rid in self._bad:
            ops += ["N", queue, rid, "", "0"]
        entry = self._entry_due()
        if entry is not None:
            ops += ["H", entry]
        held = self._held
        now = current_millis()
        promoted = []
        while held and held[0][0] <= now:
            promoted.append(heapq.heappop(held))
            proxy = promoted[-1][2]
            dq, old = proxy.handle
            message = proxy._message
            options = dict(message.options)
            options.pop("eta", None)
            options["redis_message_id"] = rid = str(uuid.uuid4())
            moved: Message[Any] = Message(
                q_name(message.queue_name), message.actor_name, message.args,
                message.kwargs, options, message.message_id, message.message_timestamp)
            ops += ["P", dq, old, q_name(dq), rid, moved.encode()]
        queues = self.queue_names
        if want > 0 and queues:
            k = self._rotation % len(queues)
            self._rotation += 1
            ops += ["F", want, len(queues), *queues[k:], *queues[:k]]
        room = MAX_HELD_DELAYED - len(held)
        if room > 0 and self.delay_names:
            ops += ["F", room, len(self.delay_names), *self.delay_names]
        try:
            found = broker._call(ops, self.worker_id, "exchange messages",
                                 maintenance_queues=self._all_queues)
        except Exception:
            for item in promoted:
                heapq.heappush(held, item)
            raise
        self._bad = []
        received = self._receive(found)
        self._hungry = want > 0 and len(received) < want
        return received

    def _receive(self, found: list[Any]) -> list[MessageProxy]:
        received = []
        for index in range(0, len(found), 3):
            queue = found[index].decode()
            rid = found[index + 1].decode()
            try:
                message = Message.decode(found[index + 2])
            except DecodeError as e:
                self.broker.logger.error("dead-lettering an undecodable message %s on %s: %s",
                                         rid, queue, e)
                self._bad.append((queue, rid))
                continue
            proxy = MessageProxy(message, handle=(queue, rid))
            if queue.endswith(".DQ"):
                eta = message.options.get("eta")
                if isinstance(eta, bool) or not isinstance(eta, (int, float)):
                    eta = 0
                heapq.heappush(self._held, (int(eta), next(self._seq), proxy))
            else:
                received.append(proxy)
        return received

    def ack(self, message: MessageProxy) -> None:
        queue, rid = message.handle
        self.broker._call(["A", queue, rid, "0" if message._exception is None else "1"],
                          self.worker_id, "acknowledge")

    def nack(self, message: MessageProxy) -> None:
        if message._exception is not None:
            self.broker.record_failure(message.handle[0], message._exception)
        self.broker._call(["N", *message.handle, self._dead_body(message), "1"],
                          self.worker_id, "dead-letter")

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        """Put fetched, unstarted messages back at the end of their queue."""
        ops: list[Any] = []
        for proxy in messages:
            ops += ["R", *proxy.handle]
        if ops:
            self.broker._call(ops, self.worker_id, "requeue")

    # -- waiting ----------------------------------------------------------------------------
    def wait(self, timeout: float) -> None:
        """Block until a message may be there, a delayed one is due, :meth:`wakeup`, or
        ``timeout`` seconds; never busy-polls."""
        if self._held:
            timeout = min(timeout, (self._held[0][0] - current_millis()) / 1000)
        if timeout <= 0:
            return
        with self._lock:
            if self._woken:
                self._woken = False
                return
            self._blocking = True
        client = self.broker.client
        keys = [*self._notify_keys, self._wake_key] if self._hungry else [self._wake_key]
        deadline = time.monotonic() + timeout
        chunk_cap = min(MAX_BLOCK, self.broker.heartbeat_timeout / 4000)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                chunk = max(min(remaining, chunk_cap), 0.001)
                if client.blpop(keys, timeout=chunk) is not None:
                    return
                if remaining > chunk:
                    self._beat(client)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            self.broker.logger.warning("waiting on Redis at %s failed: %s",
                                       self.broker._location, self.broker._scrub(str(e)))
            time.sleep(min(max(deadline - time.monotonic(), 0), 0.5))
        finally:
            with self._lock:
                self._blocking = False
                self._woken = False

    def _beat(self, client: redis.Redis) -> None:
        """A long wait: stay alive in the heartbeat set (and the registry, when due)."""
        ns = self.broker.namespace
        entry = self._entry_due()
        with client.pipeline(transaction=False) as pipe:
            pipe.zadd(f"{ns}:__heartbeats__", {self.worker_id: current_millis()})
            if entry is not None:
                pipe.hset(f"{ns}:__liteq__.workers", self.worker_id, entry)
            pipe.execute()

    def wakeup(self) -> None:
        """Make a concurrent :meth:`wait` return now (thread-safe)."""
        with self._lock:
            if self._woken:
                return
            self._woken = True
            if not self._blocking:
                return
        try:
            with self.broker.client.pipeline(transaction=False) as pipe:
                pipe.rpush(self._wake_key, "1")
                pipe.pexpire(self._wake_key, 60000)
                pipe.execute()
        except redis.RedisError as e:
            self.broker.logger.debug("could not wake a consumer: %s", e)

    def close(self) -> None:
        """Return held delayed messages to their delay queue and forget this consumer."""
        if self._closed:
            return
        self._closed = True
        ops: list[Any] = []
        for _, _, proxy in self._held:
            ops += ["R", *proxy.handle]
        self._held = []
        for queue, rid in self._bad:
            ops += ["N", queue, rid, "", "0"]
        self._bad = []
        ops += ["C", len(self._all_queues), *self._all_queues]
        try:
            self.broker._call(ops, self.worker_id, "close a consumer")
            self.broker.client.delete(self._wake_key)
        except Exception as e:
            self.broker.logger.warning("could not close a consumer cleanly: %s",
                                       self.broker._scrub(str(e)))

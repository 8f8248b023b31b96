"""The RabbitMQ broker (pika): Dramatiq's queues and message bodies, so both can share them.

Queues and bodies are Dramatiq's, so a Dramatiq worker and a liteq worker can consume
the same queue and either side may declare it first:

* per queue ``Q`` three durable queues: ``Q`` and ``Q.DQ`` (delayed messages), both
  with ``x-dead-letter-exchange=""`` and ``x-dead-letter-routing-key=Q.XQ`` (plus
  ``x-max-priority`` when the broker has ``max_priority``), and ``Q.XQ`` (dead letters)
  with ``x-message-ttl`` of 7 days (``dramatiq_dead_message_ttl`` in the environment,
  as for Dramatiq, since both sides must declare the same value);
* bodies are the JSON envelope; a delayed message goes to ``Q.DQ`` with
  ``queue_name="Q.DQ"`` and ``options.eta``; consumers hold it until its ETA, then
  publish it to ``Q`` without ``eta`` and ack it on ``Q.DQ``;
* messages are persistent (``delivery_mode=2``); a failed message is published to
  ``Q.XQ`` with its reason, traceback and time in its options, then acknowledged
  (RabbitMQ's own dead-lettering, by a nack, keeps the body and so no reason).

liteq's own records (worker heartbeats, the queues its processes declared) live in two
streams, ``liteq:workers`` and ``liteq:queues`` (see :mod:`.registry`).

Priority: with ``max_priority`` liteq's ``priority`` (larger first, the actor's or the
message's) is the AMQP priority, clamped to ``0..max_priority``; Dramatiq's
``broker_priority`` option, if a message has it, wins. Without ``max_priority`` priority
is ignored (a warning says so once).

Threads: producers use one connection and channel per thread; a consumer owns its
own connection, used only by the thread that drives it (the worker's consumer
thread), except :meth:`RabbitmqConsumer.wakeup`, which goes through pika's
``add_callback_threadsafe``.
"""

from __future__ import annotations

import operator
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pika
import pika.exceptions

from ...broker import Broker
from ...common import current_millis, dq_name, q_name, validate_priority, xq_name
from ...errors import ConnectionClosed, DecodeError
from ...message import Message
from ...middleware.middleware import Middleware
from ...urls import Secret
from .connection import (
    CONNECTION_ATTEMPTS,
    CONNECTION_ERRORS,
    RabbitmqServer,
    close_quietly,
    reason,
)
from .consumer import RabbitmqConsumer
from .inspect import RabbitmqInspector
from .queues import DEAD_MESSAGE_TTL, declare_queues, holds_any, queue_arguments
from .registry import record_queue

__all__ = ["DEAD_MESSAGE_TTL", "MAX_ENQUEUE_ATTEMPTS", "RabbitmqBroker", "RabbitmqConsumer"]

T = TypeVar("T")

#: Publishing is tried this many times (reconnecting in between) before giving up.
MAX_ENQUEUE_ATTEMPTS = 6


class RabbitmqBroker(Broker):
    """A broker on a RabbitMQ server, compatible with Dramatiq's ``RabbitmqBroker``.

    ``RabbitmqBroker(host="localhost", port=5672)``, or
    ``RabbitmqBroker(url="amqp://user:password@host:5672/vhost", confirm_delivery=True,
    connection_attempts=5, max_priority=10)``. ``url`` is one URL, several separated by
    ``;``, or a list (tried in turn); ``parameters`` is a list of dicts of
    ``pika.ConnectionParameters`` arguments; other keyword arguments go to
    ``pika.ConnectionParameters``. ``url``, ``parameters`` and ``host``/``port``/pika
    arguments exclude each other. ``connection_attempts`` is how many times a
    connection is tried, with exponential backoff, before ``ConnectionFailed``.
    """

    def __init__(
        self,
        *,
        confirm_delivery: bool = False,
        url: str | list[str] | None = None,
        middleware: list[Middleware] | None = None,
        max_priority: int | None = None,
        parameters: list[dict[str, Any]] | None = None,
        host: str | None = None,
        port: int | None = None,
        connection_attempts: int = CONNECTION_ATTEMPTS,
        **pika_connection_kwargs: Any,
    ) -> None:
        if max_priority is not None and (
            isinstance(max_priority, bool) or not isinstance(max_priority, int)
            or not 1 <= max_priority <= 255
        ):
            raise ValueError(f"max_priority must be an integer from 1 to 255, got {max_priority!r}")
        if (isinstance(connection_attempts, bool) or not isinstance(connection_attempts, int)
                or connection_attempts < 1):
            raise ValueError(
                f"connection_attempts must be a positive integer, got {connection_attempts!r}")
        pika_kwargs = dict(pika_connection_kwargs)
        if host is not None:
            pika_kwargs["host"] = host
        if port is not None:
            pika_kwargs["port"] = port
        self._server = RabbitmqServer(url, parameters, pika_kwargs)
        self.confirm_delivery = confirm_delivery
        self.max_priority = max_priority
        self.connection_attempts = connection_attempts
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[Any] = set()
        self._declared: set[str] = set()
        self._recorded: set[str] = set()
        self._consumers: weakref.WeakSet[RabbitmqConsumer] = weakref.WeakSet()
        self._properties: dict[int | None, pika.BasicProperties] = {}
        self._warned_priority = False
        self._closed = False
        super().__init__(middleware)
        _brokers.add(self)

    # -- describing -------------------------------------------------------------------
    @property
    def location(self) -> str:
        """Where the server is, without credentials (safe to print and log)."""
        return self._server.location

    def __repr__(self) -> str:
        extra = f", max_priority={self.max_priority}" if self.max_priority else ""
        if self.confirm_delivery:
            extra += ", confirm_delivery=True"
        return f"RabbitmqBroker({self.location!r}{extra})"

    __str__ = __repr__

    # -- connections ------------------------------------------------------------------
    def _connect(self) -> pika.BlockingConnection:
        """A new connection, tried ``connection_attempts`` times with exponential backoff."""
        if self._closed:
            raise ConnectionClosed("this RabbitMQ broker is closed")
        return self._server.connect(self.connection_attempts)

    def _scrub(self, text: str) -> str:
        return self._server.scrub(text)

    def _forget_connections(self) -> None:
        """In a forked child: drop (without closing) the parent's connections."""
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections = set()
        self._consumers = weakref.WeakSet()

    def _channel(self) -> Any:
        """This thread's producer channel (and connection), opened on first use."""
        state = self._local
        channel = getattr(state, "channel", None)
        if channel is not None and channel.is_open:
            return channel
        connection = getattr(state, "connection", None)
        if connection is None or not connection.is_open:
            self._drop_channel()
            connection = self._connect()
            state.connection = connection
            with self._lock:
                self._connections.add(connection)
        channel = connection.channel()
        if self.confirm_delivery:
            channel.confirm_delivery()
        state.channel = channel
        return channel

    def _drop_channel(self) -> None:
        """Forget (and close) this thread's producer connection after an error."""
        state = self._local
        connection = getattr(state, "connection", None)
        state.channel = state.connection = None
        if connection is not None:
            with self._lock:
                self._connections.discard(connection)
            close_quietly(connection)

    def _with_channel(self, fn: Callable[[Any], T], what: str) -> T:
        """Run ``fn(channel)`` on this thread's channel, reconnecting on connection loss."""
        last: BaseException | None = None
        for _ in range(MAX_ENQUEUE_ATTEMPTS):
            channel = self._channel()
            try:
                return fn(channel)
            except CONNECTION_ERRORS as e:
                last = e
                self._drop_channel()
        raise ConnectionClosed(self._scrub(
            f"{what} on RabbitMQ at {self.location} failed {MAX_ENQUEUE_ATTEMPTS} times: "
            f"{reason(last) if last else ''}"))

    # -- queues -----------------------------------------------------------------------
    def queue_arguments(self, queue_name: str) -> dict[str, Any]:
        """The arguments ``Q`` and ``Q.DQ`` are declared with (the same as Dramatiq's)."""
        return queue_arguments(queue_name, self.max_priority)

    def _declare(self, channel: Any, queue_name: str) -> tuple[int, int, int]:
        """Declare ``Q``, ``Q.DQ`` and ``Q.XQ`` on the server; their ready-message counts."""
        name = q_name(queue_name)
        counts = declare_queues(channel, name, self.queue_arguments(name), self.location)
        self._declared.add(name)
        if name not in self._recorded:
            self._recorded.add(name)
            record_queue(channel.connection, name)
        return counts

    def _ensure_declared(self, channel: Any, queue_name: str) -> None:
        if queue_name not in self._declared:
            self._declare(channel, queue_name)

    # -- producing --------------------------------------------------------------------
    def _amqp_priority(self, options: dict[str, Any], priority: int) -> int | None:
        wanted: int | None = options.get("broker_priority", priority)
        if self.max_priority is None:
            if wanted and not self._warned_priority:
                self._warned_priority = True
                self.logger.warning(
                    "priority is ignored on RabbitMQ unless the broker is built with "
                    "max_priority (RabbitmqBroker(..., max_priority=10)); this warning "
                    "is given once")
            return None
        if wanted is None:
            return None
        validate_priority(wanted)
        return max(0, min(wanted, self.max_priority))

    def _props(self, priority: int | None) -> pika.BasicProperties:
        props = self._properties.get(priority)
        if props is None:
            props = self._properties[priority] = pika.BasicProperties(
                delivery_mode=2, priority=priority)
        return props

    def _write(self, message: Message[Any], eta: int, priority: int, delay: int | None) -> None:
        """Publish ``message`` (to ``Q.DQ`` with an ``eta`` when delayed)."""
        queue_name = message.queue_name
        amqp_priority = self._amqp_priority(message.options, priority)
        if delay is not None or ("eta" in message.options and eta > current_millis()):
            routing_key = dq_name(queue_name)
            body = message.copy(queue_name=routing_key).encode()
        else:
            routing_key = queue_name
            body = message.encode()
        self._publish(queue_name, routing_key, body, self._props(amqp_priority))

    def _publish(self, queue_name: str, routing_key: str, body: bytes,
                 properties: pika.BasicProperties) -> None:
        last: BaseException | None = None
        for _ in range(MAX_ENQUEUE_ATTEMPTS):
            channel = self._channel()
            try:
                self._ensure_declared(channel, queue_name)
                channel.basic_publish(exchange="", routing_key=routing_key, body=body,
                                      properties=properties, mandatory=self.confirm_delivery)
                return
            except pika.exceptions.UnroutableError as e:
                # The queue was deleted behind our back: declare it again and retry.
                last = e
                self._declared.discard(queue_name)
            except CONNECTION_ERRORS as e:
                last = e
                self._declared.discard(queue_name)
                self._drop_channel()
        raise ConnectionClosed(self._scrub(
            f"could not publish to queue {routing_key!r} on RabbitMQ at {self.location} "
            f"after {MAX_ENQUEUE_ATTEMPTS} attempts: {reason(last) if last else ''}"))

    # -- consuming --------------------------------------------------------------------
    default_timeout = 5000

    def _consume(self, queue_names: list[str], *, prefetch: int,
                 timeout: int) -> RabbitmqConsumer:
        """A consumer of ``queue_names`` (and their delay queues), on its own connection."""
        return RabbitmqConsumer(self, [q_name(n) for n in queue_names], prefetch=prefetch,
                                timeout=timeout)

    # -- inspecting, joining, flushing ------------------------------------------------
    def inspector(self) -> RabbitmqInspector:
        """Counts, the worker registry and dead letters for the operations tools."""
        return RabbitmqInspector(self)

    def get_queue_message_counts(self, queue_name: str) -> tuple[int, int, int]:
        """Ready messages in ``Q``, ``Q.DQ`` and ``Q.XQ`` (unacknowledged ones not counted).

        RabbitMQ's counts may lag a message published a moment ago (also by this thread).
        """
        return self._with_channel(lambda ch: self._declare(ch, queue_name), "counting messages")

    def _inflight(self, queue_name: str) -> int:
        """Messages of ``queue_name`` received by this process's consumers, not settled."""
        return sum(c.inflight.get(queue_name, 0) for c in list(self._consumers))

    def _queue_busy(self, queue_name: str) -> bool:
        """Whether ``Q`` or ``Q.DQ`` holds messages or this process has unsettled ones.

        Messages received (and not yet acknowledged) by consumers of *other* processes
        are not seen: RabbitMQ does not count them per queue over AMQP.
        """
        if self._inflight(queue_name) > 0:
            return True
        ready, delayed, _ = self.get_queue_message_counts(queue_name)
        return (bool(ready or delayed) or self._inflight(queue_name) > 0
                or self._with_channel(lambda ch: holds_any(ch, queue_name), "joining"))

    # Dramatiq's RabbitmqBroker.join signature (``min_successes``, ``idle_time``)
    def join(self, queue_name: str, min_successes: int = 10,  # type: ignore[override]
             idle_time: int = 100, *, timeout: int | None = None,
             fail_fast: bool = False) -> None:
        """Wait until ``queue_name`` looks idle ``min_successes`` times in a row, looking
        at most every ``idle_time`` ms (Dramatiq's signature; liteq adds ``fail_fast``).

        Several looks: a delayed message moved from ``Q.DQ`` to ``Q`` by another
        connection is published before it is acknowledged, but not necessarily routed
        before this connection's count.
        """
        self._join(queue_name, timeout=timeout, fail_fast=fail_fast,
                   quiet_looks=max(1, min_successes), interval=idle_time / 1000)

    def flush(self, queue_name: str) -> None:
        """Delete the ready and delayed messages of ``queue_name``.

        Messages that consumers of this process hold (prefetched, or delayed until their
        ETA) are dropped by those consumers on their next round trip.
        """
        name = q_name(queue_name)
        for consumer in list(self._consumers):
            consumer.request_flush(name)

        def purge(channel: Any) -> None:
            self._ensure_declared(channel, name)
            channel.queue_purge(name)
            channel.queue_purge(dq_name(name))

        self._with_channel(purge, f"flushing {name}")

    def flush_all(self) -> None:
        """Flush every declared queue and delete every dead letter."""
        for name in list(self.queues):
            self.flush(name)
            xq = xq_name(name)
            self._with_channel(operator.methodcaller("queue_purge", xq), f"flushing {xq}")
        self._failures.clear()

    @property
    def dead_letters(self) -> list[Message[Any]]:
        """The messages in the ``.XQ`` queues of the declared queues (oldest first).

        They are read with ``basic_get`` without acknowledgement on a channel of their
        own that is then closed, so RabbitMQ puts every one back where it was: reading
        changes nothing but their ``redelivered`` flag. Undecodable bodies are skipped.
        """
        def read(channel: Any) -> list[Message[Any]]:
            found: list[Message[Any]] = []
            reader = channel.connection.channel()
            try:
                for name in sorted(self.queues):
                    self._ensure_declared(reader, name)
                    while True:
                        method, _, body = reader.basic_get(xq_name(name), auto_ack=False)
                        if method is None:
                            break
                        try:
                            found.append(Message.decode(body))
                        except DecodeError as e:
                            self.logger.warning("undecodable dead letter in %s: %s",
                                                xq_name(name), e)
            finally:
                close_quietly(reader)
            return found

        return self._with_channel(read, "reading dead letters")

    def release_info(self) -> dict[str, Any] | None:
        """The recipe ``liteq worker``'s supervisor keeps for this process: RabbitMQ itself
        requeues a dead consumer's unacked messages, so the recipe only lets the
        supervisor read queue depths for its metrics (:func:`inspect_queues`). A broker
        built from pika parameters rather than URLs has none."""
        if not self._server.urls:
            return None
        return {"module": __name__, "urls": [Secret(url) for url in self._server.urls]}

    def close(self) -> None:
        """Close every producer connection this broker opened (consumers close their own)."""
        self._closed = True
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            close_quietly(connection)
        self._local = threading.local()


_brokers: weakref.WeakSet[RabbitmqBroker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A connection must not be shared with the parent: a forked child opens its own.
    for broker in list(_brokers):
        broker._forget_connections()


os.register_at_fork(after_in_child=_after_fork_in_child)


def release(info: dict[str, Any], pid: int, running: Iterable[str] | None = None,
            overran: Iterable[str] = ()) -> int:
    """Nothing to release for dead process ``pid``: the server requeued its unacked
    messages when its connection closed (at the head of their queue, see the README's
    Limits). Returns 0."""
    return 0


def inspect_queues(info: dict[str, Any]) -> dict[str, Any]:
    """The counts of every known queue (``Inspector.queues()``) on the server of
    ``info``, for the supervisor's Prometheus queue gauges."""
    broker = RabbitmqBroker(url=[str(url) for url in info["urls"]], middleware=[],
                            connection_attempts=1)
    try:
        inspector = broker.inspector()
        try:
            return dict(inspector.queues())
        finally:
            inspector.close()
    finally:
        broker.close()

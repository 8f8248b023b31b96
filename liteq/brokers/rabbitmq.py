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
* messages are persistent (``delivery_mode=2``); a failed message is nacked without
  requeue, so RabbitMQ dead-letters it to ``Q.XQ``.

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

import heapq
import itertools
import logging
import os
import random
import threading
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

import pika
import pika.exceptions

from ..broker import Broker, Consumer, MessageProxy
from ..common import current_millis, dq_name, q_name, validate_priority, xq_name
from ..errors import (
    BrokerError,
    ConnectionClosed,
    ConnectionFailed,
    DecodeError,
    QueueJoinTimeout,
    QueueNotFound,
)
from ..message import Message
from ..middleware.middleware import Middleware
from ..urls import mask_url, scrub

__all__ = ["DEAD_MESSAGE_TTL", "MAX_ENQUEUE_ATTEMPTS", "RabbitmqBroker", "RabbitmqConsumer"]

logger = logging.getLogger("liteq.RabbitmqBroker")

#: Milliseconds a dead letter is kept in ``Q.XQ``; the same variable and default as
#: Dramatiq's, because both sides must declare the queue with the same value.
DEAD_MESSAGE_TTL = int(os.environ.get("dramatiq_dead_message_ttl", 86400000 * 7))
#: Publishing is tried this many times (reconnecting in between) before giving up.
MAX_ENQUEUE_ATTEMPTS = 6
#: Default number of connection attempts (with exponential backoff) before ConnectionFailed.
CONNECTION_ATTEMPTS = 5
#: AMQP's prefetch count is a 16-bit number.
MAX_PREFETCH = 65535

_CONNECTION_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError,
                      OSError)
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "ip6-localhost", ""}


def _is_local(host: str | None) -> bool:
    host = (host or "").lower().strip("[]")
    return host in _LOCAL_HOSTS or host.startswith("127.") or host.endswith(".localhost")


def _reason(error: BaseException) -> str:
    """A one-line description of a pika error (some have an empty ``str``)."""
    text = str(error).strip()
    if not text or text == "()":
        text = "; ".join(str(a) for a in getattr(error, "args", ()) if str(a)) or ""
    name = type(error).__name__
    return f"{name}: {text}" if text and not text.startswith(name) else (text or name)


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
        self._urls: list[str] = []
        if url is not None:
            if parameters is not None or pika_kwargs:
                raise RuntimeError(
                    "the 'url' argument cannot be combined with 'parameters', 'host', 'port' "
                    "or other pika connection arguments (put them in the URL's query string)")
            urls = url.split(";") if isinstance(url, str) else list(url)
            self._urls = [u.strip() for u in urls if u.strip()]
            if not self._urls:
                raise ValueError("url is empty")
            self._parameters = [pika.URLParameters(u) for u in self._urls]
            for u in self._urls:
                parts = urlsplit(u)
                if parts.username is None and not _is_local(parts.hostname):
                    self._warn_insecure(mask_url(u))
        elif parameters is not None:
            if pika_kwargs:
                raise RuntimeError("the 'parameters' argument cannot be combined with 'host', "
                                   "'port' or other pika connection arguments")
            self._parameters = [pika.ConnectionParameters(**p) for p in parameters]
            for p in parameters:
                if "credentials" not in p and not _is_local(p.get("host", "localhost")):
                    self._warn_insecure(str(p.get("host")))
        else:
            self._parameters = [pika.ConnectionParameters(**pika_kwargs)]
            if "credentials" not in pika_kwargs and not _is_local(pika_kwargs.get("host")):
                self._warn_insecure(str(pika_kwargs.get("host")))
        self.confirm_delivery = confirm_delivery
        self.max_priority = max_priority
        self.connection_attempts = connection_attempts
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[Any] = set()
        self._declared: set[str] = set()
        self._consumers: weakref.WeakSet[RabbitmqConsumer] = weakref.WeakSet()
        self._failures: dict[str, list[BaseException]] = {}
        self._properties: dict[int | None, pika.BasicProperties] = {}
        self._warned_priority = False
        self._closed = False
        super().__init__(middleware)
        _brokers.add(self)

    # -- describing -------------------------------------------------------------------
    @property
    def location(self) -> str:
        """Where the server is, without credentials (safe to print and log)."""
        if self._urls:
            return ";".join(mask_url(u) for u in self._urls)
        return ";".join(f"amqp://{p.host}:{p.port}/{quote(p.virtual_host, safe='')}"
                        for p in self._parameters)

    def __repr__(self) -> str:
        extra = f", max_priority={self.max_priority}" if self.max_priority else ""
        if self.confirm_delivery:
            extra += ", confirm_delivery=True"
        return f"RabbitmqBroker({self.location!r}{extra})"

    __str__ = __repr__

    @staticmethod
    def _warn_insecure(where: str) -> None:
        warnings.warn(
            f"RabbitMQ broker {where} is not on this machine and has no credentials in its "
            "configuration (pika then logs in as guest, which RabbitMQ refuses off loopback); "
            "give a user and password", UserWarning, stacklevel=3)

    # -- connections ------------------------------------------------------------------
    def _connect(self) -> pika.BlockingConnection:
        """A new connection, tried ``connection_attempts`` times with exponential backoff."""
        if self._closed:
            raise ConnectionClosed("this RabbitMQ broker is closed")
        last: BaseException | None = None
        attempts = self.connection_attempts
        for attempt in range(1, attempts + 1):
            try:
                return pika.BlockingConnection(self._parameters)
            except (pika.exceptions.ProbableAuthenticationError,
                    pika.exceptions.AuthenticationError,
                    pika.exceptions.ProbableAccessDeniedError) as e:
                raise ConnectionFailed(self._scrub(
                    f"RabbitMQ at {self.location} refused the login or the virtual host "
                    f"({_reason(e)}); check the user, password and vhost")) from None
            except (pika.exceptions.AMQPError, OSError) as e:
                last = e
            if attempt < attempts:
                pause = min(0.1 * 2 ** (attempt - 1), 5.0) * random.uniform(0.8, 1.2)
                logger.warning("cannot connect to RabbitMQ at %s (attempt %d of %d): %s; "
                               "retrying in %.1fs", self.location, attempt, attempts,
                               self._scrub(_reason(last)), pause)
                time.sleep(pause)
        raise ConnectionFailed(self._scrub(
            f"could not connect to RabbitMQ at {self.location} after {attempts} attempt(s): "
            f"{_reason(last) if last else 'unknown error'}; is the server running?"))

    def _scrub(self, text: str) -> str:
        for u in self._urls:
            text = scrub(text, u)
        return text

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
            _close_quietly(connection)

    def _with_channel(self, fn: Any, what: str) -> Any:
        """Run ``fn(channel)`` on this thread's channel, reconnecting on connection loss."""
        last: BaseException | None = None
        for _ in range(MAX_ENQUEUE_ATTEMPTS):
            channel = self._channel()
            try:
                return fn(channel)
            except _CONNECTION_ERRORS as e:
                last = e
                self._drop_channel()
        raise ConnectionClosed(self._scrub(
            f"{what} on RabbitMQ at {self.location} failed {MAX_ENQUEUE_ATTEMPTS} times: "
            f"{_reason(last) if last else ''}"))

    # -- queues -----------------------------------------------------------------------
    def queue_arguments(self, queue_name: str) -> dict[str, Any]:
        """The arguments ``Q`` and ``Q.DQ`` are declared with (the same as Dramatiq's)."""
        arguments: dict[str, Any] = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": xq_name(queue_name),
        }
        if self.max_priority:
            arguments["x-max-priority"] = self.max_priority
        return arguments

    def _declare(self, channel: Any, queue_name: str) -> tuple[int, int, int]:
        """Declare ``Q``, ``Q.DQ`` and ``Q.XQ`` on the server; their ready-message counts."""
        name = q_name(queue_name)
        arguments = self.queue_arguments(name)
        try:
            q = channel.queue_declare(queue=name, durable=True, arguments=arguments)
            dq = channel.queue_declare(queue=dq_name(name), durable=True, arguments=arguments)
            xq = channel.queue_declare(queue=xq_name(name), durable=True,
                                       arguments={"x-message-ttl": DEAD_MESSAGE_TTL})
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 406:
                raise BrokerError(
                    f"queue {name!r} exists on RabbitMQ at {self.location} with other "
                    f"arguments than {arguments} (for {name} and {dq_name(name)}) and "
                    f"{{'x-message-ttl': {DEAD_MESSAGE_TTL}}} (for {xq_name(name)}): was it "
                    f"declared with another max_priority? ({e.reply_text})") from None
            raise
        self._declared.add(name)
        return (q.method.message_count, dq.method.message_count, xq.method.message_count)

    def _ensure_declared(self, channel: Any, queue_name: str) -> None:
        if queue_name not in self._declared:
            self._declare(channel, queue_name)

    # -- producing --------------------------------------------------------------------
    def _amqp_priority(self, options: dict[str, Any], priority: int) -> int | None:
        wanted = options.get("broker_priority", priority)
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

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Publish ``message`` (to ``Q.DQ`` with an ``eta`` when delayed); returns it."""
        message, eta, priority = self.prepare_message(message, delay)
        queue_name = message.queue_name
        amqp_priority = self._amqp_priority(message.options, priority)
        self.emit_before("enqueue", message, delay)
        if delay is not None or ("eta" in message.options and eta > current_millis()):
            routing_key = dq_name(queue_name)
            body = message.copy(queue_name=routing_key).encode()
        else:
            routing_key = queue_name
            body = message.encode()
        self._publish(queue_name, routing_key, body, self._props(amqp_priority))
        self.emit_after("enqueue", message, delay)
        return message

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
            except _CONNECTION_ERRORS as e:
                last = e
                self._declared.discard(queue_name)
                self._drop_channel()
        raise ConnectionClosed(self._scrub(
            f"could not publish to queue {routing_key!r} on RabbitMQ at {self.location} "
            f"after {MAX_ENQUEUE_ATTEMPTS} attempts: {_reason(last) if last else ''}"))

    # -- consuming --------------------------------------------------------------------
    def consume(self, queue_names: str | Iterable[str], *, prefetch: int = 1,
                timeout: int = 5000) -> RabbitmqConsumer:
        """A consumer of ``queue_names`` (and their delay queues), on its own connection."""
        names = [queue_names] if isinstance(queue_names, str) else list(queue_names)
        for name in names:
            if name not in self.queues:
                raise QueueNotFound(f"queue {name!r} is not declared on this broker")
        return RabbitmqConsumer(self, [q_name(n) for n in names], prefetch=prefetch,
                                timeout=timeout)

    def record_failure(self, queue_name: str, exception: BaseException) -> None:
        """Remember a dead-lettered message's exception for ``join(fail_fast=True)``."""
        self._failures.setdefault(queue_name, []).append(exception)

    # -- inspecting, joining, flushing ------------------------------------------------
    def get_queue_message_counts(self, queue_name: str) -> tuple[int, int, int]:
        """Ready messages in ``Q``, ``Q.DQ`` and ``Q.XQ`` (unacknowledged ones not counted).

        RabbitMQ's counts may lag a message published a moment ago (also by this thread).
        """
        return self._with_channel(lambda ch: self._declare(ch, queue_name), "counting messages")

    def _inflight(self, queue_name: str) -> int:
        """Messages of ``queue_name`` received by this process's consumers, not settled."""
        return sum(c.inflight.get(queue_name, 0) for c in list(self._consumers))

    @staticmethod
    def _holds_any(channel: Any, queue_name: str) -> bool:
        """Whether ``Q`` or ``Q.DQ`` has a message, counting publishes still in flight.

        ``queue.declare`` answers with a count that can miss messages published just
        before (RabbitMQ's queue process serves that request ahead of pending
        deliveries); ``basic.get`` is served in order, so it is the barrier. A message
        it returns is rejected at once with ``requeue=True`` (back at its place, marked
        redelivered).
        """
        for name in (queue_name, dq_name(queue_name)):
            method, _, _ = channel.basic_get(name, auto_ack=False)
            if method is not None:
                channel.basic_reject(method.delivery_tag, requeue=True)
                return True
        return False

    def join(self, queue_name: str, *, timeout: int | None = None,
             fail_fast: bool = False) -> None:
        """Wait until ``Q`` and ``Q.DQ`` are empty and this process has no unsettled messages.

        Messages received (and not yet acknowledged) by consumers of *other* processes
        are not seen: RabbitMQ does not count them per queue over AMQP. With
        ``fail_fast``, re-raise the exception of a message of this queue that a worker
        in this process dead-lettered.
        """
        if queue_name not in self.queues:
            raise QueueNotFound(f"queue {queue_name!r} is not declared on this broker")
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        pause, quiet = 0.002, 0
        while True:
            if fail_fast and self._failures.get(queue_name):
                break
            busy = self._inflight(queue_name) > 0
            if not busy:
                ready, delayed, _ = self.get_queue_message_counts(queue_name)
                busy = (bool(ready or delayed) or self._inflight(queue_name) > 0
                        or self._with_channel(lambda ch: self._holds_any(ch, queue_name),
                                              "joining"))
            # Two quiet looks in a row: a delayed message moved from Q.DQ to Q by another
            # connection is published before it is acknowledged, but not necessarily
            # routed before this connection's count.
            quiet = 0 if busy else quiet + 1
            if quiet >= 2:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise QueueJoinTimeout(f"queue {queue_name!r} did not drain within {timeout} ms")
            time.sleep(pause if busy else 0.005)
            pause = min(pause * 2, 0.05) if busy else 0.002
        if fail_fast and self._failures.get(queue_name):
            raise self._failures[queue_name].pop(0)

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
            self._with_channel(lambda ch, n=name: ch.queue_purge(xq_name(n)),
                               f"flushing {xq_name(name)}")
        self._failures.clear()

    @property
    def dead_letters(self) -> list[Message]:
        """The messages in the ``.XQ`` queues of the declared queues (oldest first).

        They are read with ``basic_get`` without acknowledgement on a channel of their
        own that is then closed, so RabbitMQ puts every one back where it was: reading
        changes nothing but their ``redelivered`` flag. Undecodable bodies are skipped.
        """
        def read(channel: Any) -> list[Message]:
            found: list[Message] = []
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
                _close_quietly(reader)
            return found

        return self._with_channel(read, "reading dead letters")

    def close(self) -> None:
        """Close every producer connection this broker opened (consumers close their own)."""
        self._closed = True
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            _close_quietly(connection)
        self._local = threading.local()


_brokers: weakref.WeakSet[RabbitmqBroker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A connection must not be shared with the parent: a forked child opens its own.
    for broker in list(_brokers):
        broker._forget_connections()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_quietly(thing: Any) -> None:
    try:
        if thing.is_open:
            thing.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail in many ways
        pass


class RabbitmqConsumer(Consumer):
    """Receives from several queues and their delay queues over one connection.

    Deliveries are pushed by RabbitMQ up to ``prefetch`` unacknowledged messages per
    queue (``basic_qos``) and wait in memory, highest AMQP priority first. Messages
    of ``Q.DQ`` are held (unacknowledged) until their ETA, then published to ``Q`` and
    acknowledged. Unacknowledged messages go back to their queues when the connection
    closes, also when the process dies. After a lost connection the consumer
    reconnects on its next round trip; the messages it had then come back from the
    server, and settling them is skipped (at-least-once delivery).
    """

    def __init__(self, broker: RabbitmqBroker, queue_names: list[str], *, prefetch: int,
                 timeout: int) -> None:
        self.broker = broker
        self.queue_names = list(dict.fromkeys(queue_names))
        self.prefetch = max(1, min(int(prefetch), MAX_PREFETCH))
        self.delay_prefetch = min(self.prefetch * 1000, MAX_PREFETCH)
        self.timeout = timeout
        self.inflight: Counter[str] = Counter()
        self._connection: Any = None
        self._channel: Any = None
        self._generation = 0
        self._seq = itertools.count()
        self._ready: list[tuple] = []      # heap of (-priority, seq, tag, body, queue)
        self._delayed: list[tuple] = []    # heap of (eta, seq, tag, message, priority)
        self._unsettled: dict[int, str] = {}  # delivery tag -> queue, in delivery order
        self._consumer_queues: dict[str, str] = {}
        self._flush_lock = threading.Lock()
        self._flushes: set[str] = set()
        self._wakeup_pending = False
        self._cancelled = False
        self._disconnected = threading.Event()
        self._closed = False
        self._connect()
        broker._consumers.add(self)

    # -- connection -------------------------------------------------------------------
    def _connect(self) -> None:
        broker = self.broker
        connection = broker._connect()
        try:
            channel = connection.channel()
            if broker.confirm_delivery:
                channel.confirm_delivery()
            channel.add_on_cancel_callback(self._on_cancel)
            for name in self.queue_names:
                broker._declare(channel, name)
            consumer_queues = {}
            channel.basic_qos(prefetch_count=self.prefetch)
            for name in self.queue_names:
                tag = channel.basic_consume(name, self._on_message, auto_ack=False)
                consumer_queues[tag] = name
            channel.basic_qos(prefetch_count=self.delay_prefetch)
            for name in self.queue_names:
                tag = channel.basic_consume(dq_name(name), self._on_delayed, auto_ack=False)
                consumer_queues[tag] = name
        except BaseException:
            _close_quietly(connection)
            raise
        self._consumer_queues = consumer_queues
        self._generation += 1
        self._wakeup_pending = False
        self._cancelled = False
        self._connection, self._channel = connection, channel
        self._disconnected.clear()

    def _lost(self, error: BaseException) -> None:
        """Drop the connection and everything received on it (the server redelivers it)."""
        if self._connection is not None and not self._closed:
            self.broker.logger.warning(
                "lost the consumer connection to RabbitMQ at %s: %s; reconnecting",
                self.broker.location, self.broker._scrub(_reason(error)))
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            _close_quietly(connection)
        self._ready.clear()
        self._delayed.clear()
        self._unsettled.clear()
        self.inflight.clear()

    def _ensure_connected(self) -> None:
        if self._closed:
            raise ConnectionClosed("this consumer is closed")
        if self._cancelled:
            self._lost(ConnectionClosed("RabbitMQ cancelled a consumer (was a queue deleted?)"))
        if self._connection is None or not self._connection.is_open:
            if self._connection is not None:
                self._lost(ConnectionClosed("connection closed"))
            self._connect()

    # -- delivery callbacks (run inside pika's event processing, consumer thread) ------
    def _on_cancel(self, method_frame: Any) -> None:
        # The queue was deleted (or the node lost it): start over on the next round trip,
        # which declares the queues again.
        self._cancelled = True
    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        queue = self._consumer_queues[method.consumer_tag]
        tag = method.delivery_tag
        self._unsettled[tag] = queue
        self.inflight[queue] += 1
        heapq.heappush(self._ready, (-(properties.priority or 0), next(self._seq), tag, body,
                                     queue))

    def _on_delayed(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        queue = self._consumer_queues[method.consumer_tag]
        tag = method.delivery_tag
        self._unsettled[tag] = queue
        self.inflight[queue] += 1
        try:
            message = Message.decode(body)
        except DecodeError as e:
            self.broker.logger.error("dead-lettering an undecodable message on %s: %s",
                                     dq_name(queue), e)
            self._settle_one(tag, ack=False)
            return
        eta = message.options.get("eta")
        if isinstance(eta, bool) or not isinstance(eta, (int, float)):
            eta = current_millis()
        try:
            self.broker.emit_before("delay_message", MessageProxy(message))
        except Exception:  # noqa: BLE001 - a hook must not break pika's dispatch
            self.broker.logger.exception("before_delay_message hook failed")
        heapq.heappush(self._delayed, (eta, next(self._seq), tag, message, properties.priority))

    # -- settling ---------------------------------------------------------------------
    def _settle_one(self, tag: int, *, ack: bool, requeue: bool = False) -> None:
        queue = self._unsettled.pop(tag)
        self.inflight[queue] -= 1
        if ack:
            self._channel.basic_ack(tag)
        elif requeue:
            self._channel.basic_reject(tag, requeue=True)
        else:
            self._channel.basic_nack(tag, requeue=False)

    def _settle(self, done: list[MessageProxy]) -> None:
        acks: set[int] = set()
        generation = self._generation
        unsettled = self._unsettled
        for proxy in done:
            handle = proxy.handle
            if handle is None or handle[0] != generation or handle[1] not in unsettled:
                continue  # received on a lost connection: the server redelivers it
            if proxy.failed:
                self._settle_one(handle[1], ack=False)
                if proxy._exception is not None:
                    self.broker.record_failure(handle[2], proxy._exception)
            else:
                acks.add(handle[1])
        if not acks:
            return
        # One ``multiple`` ack for the longest run of settled tags from the oldest one.
        last = None
        for tag in unsettled:
            if tag not in acks:
                break
            last = tag
        if last is not None:
            for tag in list(itertools.takewhile(lambda t: t <= last, unsettled)):
                self.inflight[unsettled.pop(tag)] -= 1
                acks.discard(tag)
            self._channel.basic_ack(last, multiple=True)
        for tag in acks:
            self._settle_one(tag, ack=True)

    def _move_due(self) -> None:
        """Publish delayed messages whose ETA has passed to their queue; ack them on ``Q.DQ``."""
        now = current_millis()
        broker = self.broker
        while self._delayed and self._delayed[0][0] <= now:
            _, _, tag, message, priority = heapq.heappop(self._delayed)
            queue = self._unsettled.get(tag)
            if queue is None:
                continue
            options = dict(message.options)
            options.pop("eta", None)
            moved = Message(queue, message.actor_name, message.args, message.kwargs, options,
                            message.message_id, message.message_timestamp)
            self._channel.basic_publish(exchange="", routing_key=queue, body=moved.encode(),
                                        properties=broker._props(priority),
                                        mandatory=broker.confirm_delivery)
            self._settle_one(tag, ack=True)

    def request_flush(self, queue_name: str) -> None:
        """Drop held messages of ``queue_name`` on the next round trip (thread-safe)."""
        with self._flush_lock:
            self._flushes.add(queue_name)
        self.wakeup()

    def _apply_flushes(self) -> None:
        with self._flush_lock:
            names, self._flushes = self._flushes, set()
        kept = [item for item in self._ready if item[4] not in names]
        for item in self._ready:
            if item[4] in names and item[2] in self._unsettled:
                self._settle_one(item[2], ack=True)
        heapq.heapify(kept)
        self._ready = kept
        kept = []
        for item in self._delayed:
            queue = self._unsettled.get(item[2])
            if queue in names:
                self._settle_one(item[2], ack=True)
            elif queue is not None:
                kept.append(item)
        heapq.heapify(kept)
        self._delayed = kept

    # -- the Consumer interface -------------------------------------------------------
    def exchange(self, done: list[MessageProxy], want: int) -> list[MessageProxy]:
        """Settle ``done`` (ack, or nack to ``Q.XQ``), then return up to ``want`` messages."""
        try:
            self._ensure_connected()
            if self._flushes:
                self._apply_flushes()
            if done:
                self._settle(done)
            self._connection.process_data_events(0)
            if self._delayed and self._delayed[0][0] <= current_millis():
                self._move_due()
            received: list[MessageProxy] = []
            ready = self._ready
            generation = self._generation
            while len(received) < want and ready:
                _, _, tag, body, queue = heapq.heappop(ready)
                try:
                    message = Message.decode(body)
                except DecodeError as e:
                    self.broker.logger.error("dead-lettering an undecodable message on %s: %s",
                                             queue, e)
                    self._settle_one(tag, ack=False)
                    continue
                received.append(MessageProxy(message, handle=(generation, tag, queue)))
            return received
        except _CONNECTION_ERRORS as e:
            # What was received on the lost connection comes back from the server;
            # reconnect now (ConnectionFailed after connection_attempts).
            self._lost(e)
            self._connect()
            return []

    def poll(self) -> MessageProxy | None:
        received = self.exchange([], 1)
        return received[0] if received else None

    def ack(self, message: MessageProxy) -> None:
        self.exchange([message], 0)

    def nack(self, message: MessageProxy) -> None:
        message.fail()
        self.exchange([message], 0)

    def wait(self, timeout: float) -> None:
        """Block in pika's event loop up to ``timeout`` s, a delivery, an ETA or a wakeup."""
        if self._closed:
            return
        if self._connection is None:
            self._disconnected.wait(min(timeout, 1.0))
            self._disconnected.clear()
            return
        if self._delayed:
            timeout = min(timeout, max(0.0, (self._delayed[0][0] - current_millis()) / 1000))
        try:
            self._connection.process_data_events(time_limit=timeout)
        except _CONNECTION_ERRORS as e:
            self._lost(e)

    def _woken(self) -> None:
        self._wakeup_pending = False

    def wakeup(self) -> None:
        """Make a concurrent :meth:`wait` return now (any thread)."""
        if self._wakeup_pending:
            return
        connection = self._connection
        if connection is None:
            self._disconnected.set()
            return
        self._wakeup_pending = True
        try:
            connection.add_callback_threadsafe(self._woken)
        except Exception:  # noqa: BLE001 - a closing connection refuses callbacks
            self._wakeup_pending = False
            self._disconnected.set()

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        """Give received, unstarted messages back to their queue (``basic_reject``)."""
        try:
            for proxy in messages:
                handle = proxy.handle
                if (self._channel is not None and handle is not None
                        and handle[0] == self._generation and handle[1] in self._unsettled):
                    self._settle_one(handle[1], ack=False, requeue=True)
        except _CONNECTION_ERRORS as e:
            self._lost(e)  # unacknowledged messages go back anyway

    def close(self) -> None:
        """Close the connection; RabbitMQ requeues whatever was not acknowledged."""
        self._closed = True
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            _close_quietly(connection)
        self._ready.clear()
        self._delayed.clear()
        self._unsettled.clear()
        self.inflight.clear()
        self._disconnected.set()
        self.broker._consumers.discard(self)

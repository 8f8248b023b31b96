"""The RabbitMQ consumer: one connection receiving from queues and from their delay queues.

Delayed messages of ``Q.DQ`` are held here, unacknowledged, until their ETA, then moved to ``Q``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pika.exceptions

from ...broker import BatchConsumer, MessageProxy
from ...common import current_millis, dq_name, xq_name
from ...errors import ConnectionClosed, DecodeError
from ...message import Message
from ..failure import dead_letter_body
from .connection import CONNECTION_ERRORS, close_quietly, reason
from .registry import HEARTBEAT_INTERVAL, Heartbeat

if TYPE_CHECKING:
    # Type-only, and mutual by nature: the broker builds its consumers, which use it.
    from .broker import RabbitmqBroker

__all__ = ["MAX_PREFETCH", "RabbitmqConsumer"]

#: AMQP's prefetch count is a 16-bit number.
MAX_PREFETCH = 65535
#: Seconds at least between a heartbeat and the one that says the consumer went idle.
IDLE_BEAT_GAP = 0.1
#: The per-queue counts of :attr:`RabbitmqConsumer.settled`, in order.
_SETTLED = ("succeeded", "failed", "retried", "dead_lettered")
#: The registry entry of a consumer no worker describes (``broker.consume`` by hand).
_UNDESCRIBED = {"threads": 0, "running": [], "running_queues": {}, "processed": 0,
                "succeeded": 0, "failed": 0, "activity": {}}


class RabbitmqConsumer(BatchConsumer):
    """Receives from several queues and their delay queues over one connection.

    Deliveries are pushed by RabbitMQ up to ``prefetch`` unacknowledged messages per
    queue (``basic_qos``) and wait in memory, highest AMQP priority first. Messages
    of ``Q.DQ`` are held (unacknowledged) until their ETA, then published to ``Q`` and
    acknowledged. Unacknowledged messages go back to their queues when the connection
    closes, also when the process dies. After a lost connection, or a channel the
    server closed, the consumer reconnects on its next round trip; the messages it
    had then come back from the server, and settling them is skipped (at-least-once
    delivery).

    Failed messages are published to ``Q.XQ`` with why they failed in their options
    (:func:`liteq.brokers.failure.dead_letter_body`), then acknowledged. Every
    :data:`~.registry.HEARTBEAT_INTERVAL` the consumer publishes its worker registry
    entry (``describe()``, plus per queue what it holds and what it settled) to
    ``liteq:workers``.
    """

    def __init__(self, broker: RabbitmqBroker, queue_names: list[str], *, prefetch: int,
                 timeout: int) -> None:
        self.broker = broker
        self.queue_names = list(dict.fromkeys(queue_names))
        self.prefetch = max(1, min(int(prefetch), MAX_PREFETCH))
        self.delay_prefetch = min(self.prefetch * 1000, MAX_PREFETCH)
        self.timeout = timeout
        self.inflight: Counter[str] = Counter()
        #: Per queue, this consumer's attempts since it started: succeeded, failed,
        #: retried, dead-lettered (published with its heartbeats, for rates).
        self.settled: dict[str, list[int]] = {}
        self._connection: Any = None
        self._channel: Any = None
        self._generation = 0
        self._seq = itertools.count()
        # heap of (-priority, seq, tag, body, queue)
        self._ready: list[tuple[int, int, int, bytes, str]] = []
        # heap of (eta, seq, tag, message, priority)
        self._delayed: list[tuple[float, int, int, Message[Any], int | None]] = []
        self._unsettled: dict[int, str] = {}  # delivery tag -> queue, in delivery order
        self._consumer_queues: dict[str, str] = {}
        self._flush_lock = threading.Lock()
        self._flushes: set[str] = set()
        self._added: set[str] = set()
        self._wakeup_pending = False
        self._cancelled = False
        self._disconnected = threading.Event()
        self._closed = False
        #: What the worker registry publishes (``Worker.describe``); set by the worker.
        self.describe: Callable[[], dict[str, Any]] = dict
        self._heartbeat = Heartbeat()
        self._reported = False  # whether the last heartbeat said it held messages
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
            self._heartbeat.attach(connection)
        except BaseException:
            close_quietly(connection)
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
                self.broker.location, self.broker._scrub(reason(error)))
        self._drop()

    def _drop(self) -> None:
        """Close the connection and forget what was received on it."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            close_quietly(connection)
        self._ready.clear()
        self._delayed.clear()
        self._unsettled.clear()
        self.inflight.clear()

    def _channel_lost(self) -> bool:
        """Whether RabbitMQ closed the channel while the connection stayed open.

        The server closes a channel on a channel-level error (for example an unknown
        delivery tag, or a delivery unacknowledged past ``consumer_timeout``). pika
        raises that only from a later call on the channel itself; seen while waiting in
        ``process_data_events`` it is silent, and the open connection would then carry
        no delivery ever again.
        """
        channel = self._channel
        return (channel is not None and not channel.is_open
                and self._connection is not None and self._connection.is_open)

    def _ensure_connected(self) -> None:
        if self._closed:
            raise ConnectionClosed("this consumer is closed")
        if self._cancelled:
            self._lost(ConnectionClosed("RabbitMQ cancelled a consumer (was a queue deleted?)"))
        if self._channel_lost():
            self._lost(ConnectionClosed(self._channel_close_reason()))
        if self._connection is None or not self._connection.is_open:
            if self._connection is not None:
                self._lost(ConnectionClosed("connection closed"))
            self._connect()

    def _channel_close_reason(self) -> str:
        # pika keeps the server's reply (code and text) on the channel, privately.
        why = getattr(self._channel, "_closing_reason", None)
        return f"RabbitMQ closed the consumer channel ({reason(why) if why else 'no reason'})"

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
            tally = self.settled.setdefault(handle[2], [0, 0, 0, 0])
            if proxy.failed:
                tally[1] += 1
                tally[3] += 1
                self._dead_letter(handle[1], handle[2], proxy)
                if proxy._exception is not None:
                    self.broker.record_failure(handle[2], proxy._exception)
            else:
                if proxy._exception is not None:  # failed, and a retry was enqueued
                    tally[1] += 1
                    tally[2] += 1
                else:
                    tally[0] += 1
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

    def _dead_letter(self, tag: int, queue: str, proxy: MessageProxy) -> None:
        """Publish the failed message, with its reason, to ``Q.XQ``, then ack it (a
        duplicate, never a loss, if the connection drops in between). With
        ``confirm_delivery``, a ``Q.XQ`` deleted meanwhile is declared again; if RabbitMQ
        still refuses the copy, the message is nacked (dead-lettered without a reason)."""
        body = dead_letter_body(proxy)
        for attempt in (1, 2):
            try:
                self._channel.basic_publish(exchange="", routing_key=xq_name(queue), body=body,
                                            properties=self.broker._props(None),
                                            mandatory=self.broker.confirm_delivery)
                self._settle_one(tag, ack=True)
                return
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as e:
                if attempt == 1 and isinstance(e, pika.exceptions.UnroutableError):
                    self.broker._declare(self._channel, queue)
                    continue
                self.broker.logger.warning(
                    "RabbitMQ refused the dead letter %s for %s (%s); nacking it instead",
                    proxy.message_id, xq_name(queue), type(e).__name__)
                break
        self._settle_one(tag, ack=False)

    def held(self) -> dict[str, dict[str, int]]:
        """Per queue, the messages this consumer holds unacknowledged: ``claimed``
        (prefetched or running) and ``delayed`` (from ``Q.DQ``, until their ETA)."""
        delayed: Counter[str] = Counter()
        unsettled = self._unsettled
        for item in self._delayed:
            queue = unsettled.get(item[2])
            if queue is not None:
                delayed[queue] += 1
        return {queue: {"claimed": n - delayed[queue], "delayed": delayed[queue]}
                for queue, n in self.inflight.items() if n}

    def _beat_at(self) -> float:
        """When the next heartbeat is due (monotonic): every HEARTBEAT_INTERVAL, and
        IDLE_BEAT_GAP after the last one when that said it held messages and it holds
        none now (the registry shows it idle without waiting a whole interval)."""
        if self._reported and not self.inflight.total():
            return self._heartbeat.due - HEARTBEAT_INTERVAL + IDLE_BEAT_GAP
        return self._heartbeat.due

    def _beat(self, *, stopped: bool = False) -> None:
        settled = {queue: dict(zip(_SETTLED, t, strict=True)) for queue, t in self.settled.items()}
        held = self.held()
        self._reported = bool(held)
        entry = dict(_UNDESCRIBED, **self.describe(), queues=list(self.queue_names),
                     held=held, settled=settled)
        self._heartbeat.beat(entry, stopped=stopped)

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
            moved: Message[Any] = Message(
                queue, message.actor_name, message.args, message.kwargs, options,
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
        kept_delayed = []
        for delayed in self._delayed:
            queue = self._unsettled.get(delayed[2])
            if queue in names:
                self._settle_one(delayed[2], ack=True)
            elif queue is not None:
                kept_delayed.append(delayed)
        heapq.heapify(kept_delayed)
        self._delayed = kept_delayed

    def add_queue(self, queue_name: str) -> None:
        """Consume ``queue_name`` too from the next round trip on (thread-safe: pika's
        channel is touched only by the consumer's own thread)."""
        with self._flush_lock:
            self._added.add(queue_name)
        self.wakeup()

    def _apply_added(self) -> None:
        with self._flush_lock:
            names, self._added = self._added, set()
        channel = self._channel
        for name in sorted(names - set(self.queue_names)):
            self.broker._declare(channel, name)
            channel.basic_qos(prefetch_count=self.prefetch)
            self._consumer_queues[channel.basic_consume(
                name, self._on_message, auto_ack=False)] = name
            channel.basic_qos(prefetch_count=self.delay_prefetch)
            self._consumer_queues[channel.basic_consume(
                dq_name(name), self._on_delayed, auto_ack=False)] = name
            self.queue_names.append(name)

    # -- the Consumer interface -------------------------------------------------------
    def exchange(self, done: list[MessageProxy], want: int) -> list[MessageProxy]:
        """Settle ``done`` (ack, or nack to ``Q.XQ``), then return up to ``want`` messages."""
        try:
            self._ensure_connected()
            if self._added:
                self._apply_added()
            if self._flushes:
                self._apply_flushes()
            if done:
                self._settle(done)
            self._connection.process_data_events(0)
            if self._channel_lost():
                # What it received is requeued by the server: drop it and start over.
                self._lost(ConnectionClosed(self._channel_close_reason()))
                self._connect()
                return []
            if self._delayed and self._delayed[0][0] <= current_millis():
                self._move_due()
            if time.monotonic() >= self._beat_at():
                self._beat()
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
        except CONNECTION_ERRORS as e:
            # What was received on the lost connection comes back from the server;
            # reconnect now (ConnectionFailed after connection_attempts).
            self._lost(e)
            self._connect()
            return []

    def wait(self, timeout: float) -> None:
        """Block in pika's event loop up to ``timeout`` s, a delivery, an ETA or a wakeup."""
        if self._closed:
            return
        if self._connection is None:
            self._disconnected.wait(min(timeout, 1.0))
            self._disconnected.clear()
            return
        if self._channel_lost():
            return  # the next round trip reconnects
        if self._delayed:
            timeout = min(timeout, max(0.0, (self._delayed[0][0] - current_millis()) / 1000))
        timeout = min(timeout, max(0.0, self._beat_at() - time.monotonic()))
        try:
            self._connection.process_data_events(time_limit=timeout)
        except CONNECTION_ERRORS as e:
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
        except CONNECTION_ERRORS as e:
            self._lost(e)  # unacknowledged messages go back anyway

    def close(self) -> None:
        """Close the connection; RabbitMQ requeues whatever was not acknowledged."""
        if not self._closed and self._connection is not None:
            try:
                self._beat(stopped=True)
            except CONNECTION_ERRORS:
                pass  # the registry forgets it once its heartbeats are old
        self._closed = True
        self._drop()
        self._disconnected.set()
        self.broker._consumers.discard(self)

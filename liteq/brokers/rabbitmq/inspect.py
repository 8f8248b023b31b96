"""The RabbitMQ broker seen by the operations tools, over AMQP only (no management plugin).

* **Which queues**: the queues named in live worker heartbeats, those recorded by liteq
  processes when they declared them (``liteq:queues``, see :mod:`.registry`), those of
  the broker object and those given with :meth:`RabbitmqInspector.watch` (``--queue``).
  A queue that does not exist on the server is not listed.
* **Depths** by passive ``queue.declare`` of ``Q``, ``Q.DQ`` and ``Q.XQ``: ready = ``Q``,
  delayed = ``Q.DQ`` + the delayed messages consumers hold until their ETA, dead =
  ``Q.XQ``.
* **Claimed and running** from the fresh heartbeats of liteq workers (``liteq:workers``,
  read from a time offset, so the first answer comes at once); ``None`` when the server
  has no streams. What Dramatiq's own workers hold is not seen: RabbitMQ does not say
  over AMQP how many messages a queue has unacknowledged.
* **Lifetime totals** (succeeded, failed, retried, dead-lettered) are ``None``: each
  worker reports its own since it started and they die with it. Rates come from the
  ``succeeded``/``failed`` of the live workers' entries (:meth:`workers`), compared
  between two reads.
* **Dead letters** are the messages of ``Q.XQ``, identified by message id, read with
  ``basic_get`` on a channel of their own and never acknowledged (closing the channel
  puts them back in order); a requeue publishes (with publisher confirms) before it
  acknowledges, so a crash leaves a duplicate, never a loss.
"""

from __future__ import annotations

import datetime
import functools
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions

from ...common import dq_name, q_name, xq_name
from ...errors import BrokerError, ConnectionClosed, DecodeError
from ...message import Message
from ..failure import requeued_body
from ..inspect import STALE_AFTER_MS, DeadLetter, Inspector, Progress, QueueCounts
from .connection import CONNECTION_ERRORS, close_quietly, reason
from .registry import (
    HOST,
    QUEUES_STREAM,
    WORKER_WINDOW,
    WORKERS_STREAM,
    StreamReader,
    declare_stream,
)

if TYPE_CHECKING:
    # Type-only, and mutual by nature: the broker builds its inspector, which reads it.
    from .broker import RabbitmqBroker

#: Options a requeued dead letter starts again without (a new ready message).
#: Seconds before a queue recorded once but missing on the server is looked for again
#: (each look at a missing queue costs a channel).
MISSING_RECHECK = 10.0
#: Seconds the newest dead letters are reused while the dead-letter counts stay the same.
RECENT_TTL = 5.0

#: Called with (channel, delivery method, properties, body) of each dead letter read;
#: it may acknowledge it on that channel.
Visit = Callable[[Any, Any, Any, bytes], None]


class RabbitmqInspector(Inspector):
    """Counts, worker registry and dead letters of a :class:`RabbitmqBroker` (see the
    module's notes); one connection of its own, used under a lock."""

    def __init__(self, broker: RabbitmqBroker, queue_names: Iterable[str] = ()) -> None:
        self.broker = broker
        self.url = broker.location
        self.watched = {q_name(n) for n in queue_names}
        self._lock = threading.RLock()
        self._connection: Any = None
        self._channel: Any = None
        self._workers_stream: StreamReader | None = None
        self._queues_stream: StreamReader | None = None
        self._entries: dict[str, dict[str, Any]] = {}
        self._recorded: set[str] = set()
        self._recent: tuple[float, int, list[DeadLetter]] | None = None
        #: Queues named somewhere but missing on the server -> when to look again.
        self._missing: dict[str, float] = {}

    def watch(self, queue_names: Iterable[str]) -> None:
        """Also list ``queue_names`` (``--queue``), which no heartbeat or record names."""
        self.watched |= {q_name(n) for n in queue_names}

    # -- connection -------------------------------------------------------------------
    def _open(self) -> None:
        if self._connection is not None and self._connection.is_open:
            if self._channel is None or not self._channel.is_open:
                self._channel = self._connection.channel()
            return
        self._drop()
        self._connection = self.broker._connect()
        self._channel = self._connection.channel()
        self._workers_stream = self._subscribe(
            WORKERS_STREAM, int(time.time() * 1000) - WORKER_WINDOW)
        self._queues_stream = self._subscribe(QUEUES_STREAM, "first")
        self._entries.clear()
        self._read_streams(sync=True)

    def _subscribe(self, stream: str, offset: str | int) -> StreamReader | None:
        """A reader of ``stream``, or None when the server has no streams (then the
        worker registry, or the queue records, are not known)."""
        channel = self._connection.channel()
        try:
            declare_stream(channel, stream)
            return StreamReader(channel, stream, offset)
        except pika.exceptions.ChannelClosedByBroker:
            return None

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            for reader in (self._workers_stream, self._queues_stream):
                if reader is not None:
                    reader.close()
        self._workers_stream = self._queues_stream = None
        if connection is not None:
            close_quietly(connection)

    def _call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` under the lock, with the connection open; once more after losing it,
        then :class:`ConnectionClosed`."""
        with self._lock:
            try:
                self._open()
                return fn()
            except CONNECTION_ERRORS:
                self._drop()
            try:
                self._open()
                return fn()
            except CONNECTION_ERRORS as e:
                self._drop()
                raise ConnectionClosed(self.broker._scrub(
                    f"reading RabbitMQ at {self.url} failed twice: {reason(e)}")) from None

    # -- the registry -----------------------------------------------------------------
    def _read_streams(self, *, sync: bool = False) -> None:
        """Take in what the streams brought: every heartbeat published before this call
        (a marker is read back, ~1 ms), the queue records that arrived (all of them when
        ``sync``)."""
        if self._workers_stream is not None:
            for entry in self._workers_stream.sync():
                owner = entry.get("owner")
                if not isinstance(owner, str):
                    continue
                if entry.get("stopped"):
                    self._entries.pop(owner, None)
                else:
                    self._entries[owner] = entry
        if self._queues_stream is not None:
            records = self._queues_stream.sync() if sync else self._queues_stream.poll()
            self._recorded.update(r["queue"] for r in records if isinstance(r.get("queue"), str))
        oldest = int(time.time() * 1000) - WORKER_WINDOW
        for owner in [o for o, e in self._entries.items() if e.get("heartbeat_at", 0) < oldest]:
            del self._entries[owner]

    def workers(self) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            self._read_streams()
            return [{k: v for k, v in entry.items() if k != "stopped"}
                    for _, entry in sorted(self._entries.items())]

        result: list[dict[str, Any]] = self._call(read)
        return result

    # -- counts -----------------------------------------------------------------------
    def _depths(self, name: str) -> tuple[int, int, int] | None:
        """Ready messages in ``Q``, ``Q.DQ`` and ``Q.XQ``, or None if one does not exist."""
        try:
            depths = tuple(self._channel.queue_declare(queue=n, passive=True)
                           .method.message_count for n in (name, dq_name(name), xq_name(name)))
        except pika.exceptions.ChannelClosedByBroker as e:
            self._channel = self._connection.channel()
            if e.reply_code == 404:
                self._missing[name] = time.monotonic() + MISSING_RECHECK
                return None
            raise
        self._missing.pop(name, None)
        return depths

    def _names(self) -> list[str]:
        """The queues to list: those given (``watch``, the broker's) and those recorded or
        in heartbeats, less the latter found missing a moment ago."""
        named = set(self._recorded)
        for entry in self._entries.values():
            named.update(q for q in entry.get("queues", ()) if isinstance(q, str))
        now = time.monotonic()
        given = self.watched | {q_name(n) for n in self.broker.queues}
        return sorted(given | {n for n in named if self._missing.get(n, 0) <= now})

    def queues(self) -> dict[str, QueueCounts]:
        result: dict[str, QueueCounts] = self._call(self._counts)
        return result

    def _counts(self) -> dict[str, QueueCounts]:
        self._read_streams()
        registry = self._workers_stream is not None
        held: dict[str, list[int]] = {}
        fresh = int(time.time() * 1000) - STALE_AFTER_MS
        for entry in self._entries.values():
            if entry.get("heartbeat_at", 0) < fresh or _gone(entry):
                continue  # what it held is back in its queue, or soon will be
            for queue, h in (entry.get("held") or {}).items():
                tally = held.setdefault(queue, [0, 0, 0])
                tally[0] += h.get("claimed", 0)
                tally[1] += h.get("delayed", 0)
            for queue, n in (entry.get("running_queues") or {}).items():
                held.setdefault(queue, [0, 0, 0])[2] += n
        counts = {}
        for name in self._names():
            depths = self._depths(name)
            if depths is None:
                continue
            ready, delayed, dead = depths
            claimed, held_delayed, running = held.get(name, (0, 0, 0))
            counts[name] = QueueCounts(
                ready=ready, delayed=delayed + held_delayed,
                claimed=claimed if registry else None, running=running if registry else None,
                dead=dead, succeeded=None, failed=None, retried=None, dead_lettered=None)
        return counts

    # -- dead letters -----------------------------------------------------------------
    def _visit(self, name: str, visit: Visit, *, confirm: bool = False,
               limit: int | None = None) -> None:
        """Call ``visit`` on the messages of ``Q.XQ`` in order (at most ``limit``), on a
        channel of their own; those it does not settle go back when it is closed."""
        channel = self._connection.channel()
        try:
            if confirm:
                channel.confirm_delivery()
            seen = 0
            while limit is None or seen < limit:
                method, properties, body = channel.basic_get(xq_name(name), auto_ack=False)
                if method is None:
                    break
                seen += 1
                visit(channel, method, properties, body)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 404:
                raise
        finally:
            close_quietly(channel)

    def _letters(self, name: str, limit: int | None = None,
                 wanted: set[str] | None = None) -> list[DeadLetter]:
        found: list[DeadLetter] = []

        def keep(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            letter = _letter(name, properties, body)
            if wanted is None or letter.id in wanted:
                found.append(letter)

        self._visit(name, keep, limit=limit)
        return found

    def _queue_list(self, queue_name: str | None) -> list[str]:
        if queue_name is not None:
            return [q_name(queue_name)]
        self._read_streams()
        return self._names()

    def dead_letters(self, queue_name: str | None = None, limit: int | None = None
                     ) -> list[DeadLetter]:
        def read() -> list[DeadLetter]:
            found: list[DeadLetter] = []
            for name in self._queue_list(queue_name):
                found.extend(self._letters(name, limit))
            found.sort(key=lambda d: d.failed_at or 0)
            return found[:limit] if limit is not None else found

        result: list[DeadLetter] = self._call(read)
        return result

    def recent_dead(self, limit: int) -> list[DeadLetter]:
        """The newest ``limit`` dead letters; reused for :data:`RECENT_TTL` seconds while
        the number of dead letters stays the same (``top`` asks on every frame)."""
        def read() -> list[DeadLetter]:
            names = self._queue_list(None)
            total = sum(d[2] for d in map(self._depths, names) if d is not None)
            cached = self._recent
            if cached is not None and cached[1] == total and time.monotonic() < cached[0]:
                return cached[2][:limit]
            found = [letter for name in names for letter in self._letters(name)][::-1]
            found.sort(key=lambda d: d.failed_at or 0, reverse=True)  # ties: newest first
            self._recent = (time.monotonic() + RECENT_TTL, total, found[:max(limit, 20)])
            return found[:limit]

        result: list[DeadLetter] = self._call(read)
        return result

    def dead_letter(self, dead_id: str) -> DeadLetter | None:
        def find() -> DeadLetter | None:
            for name in self._queue_list(None):
                letters = self._letters(name, wanted={dead_id})
                if letters:
                    return letters[0]
            return None

        result: DeadLetter | None = self._call(find)
        return result

    def requeue_dead(self, ids: list[str] | None = None, *, queue_name: str | None = None,
                     progress: Progress | None = None) -> int:
        wanted = None if ids is None else set(ids)
        moved = 0

        def requeue(queue: str, channel: Any, method: Any, properties: Any, body: bytes
                    ) -> None:
            nonlocal moved
            letter = _letter(queue, properties, body)
            if wanted is not None and letter.id not in wanted:
                return
            try:  # confirmed and routed (mandatory) before the dead letter is acknowledged
                channel.basic_publish("", queue, requeued_body(letter.body, queue),
                                      self.broker._props(properties.priority), mandatory=True)
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as e:
                raise BrokerError(
                    f"RabbitMQ refused the requeued copy of dead letter {letter.id} for "
                    f"queue {queue} ({type(e).__name__}); it stays in {xq_name(queue)} "
                    f"({moved} requeued before it)") from None
            channel.basic_ack(method.delivery_tag)
            moved += 1
            if progress:
                progress(moved)

        def run() -> int:
            for queue in self._queue_list(None if ids is not None else queue_name):
                if self._depths(queue) is not None:
                    self._visit(queue, functools.partial(requeue, queue), confirm=True)
            return moved

        result: int = self._call(run)
        return result

    def purge_dead(self, ids: list[str] | None = None, *, queue_name: str | None = None,
                   progress: Progress | None = None) -> int:
        wanted = set(ids or ())
        removed = 0

        def delete(queue: str, channel: Any, method: Any, properties: Any, body: bytes
                   ) -> None:
            nonlocal removed
            if _letter(queue, properties, body).id not in wanted:
                return
            channel.basic_ack(method.delivery_tag)
            removed += 1
            if progress:
                progress(removed)

        def run() -> int:
            nonlocal removed
            for queue in self._queue_list(None if ids is not None else queue_name):
                if self._depths(queue) is None:
                    continue
                if ids is None:
                    removed += self._channel.queue_purge(xq_name(queue)).method.message_count
                    if progress:
                        progress(removed)
                else:
                    self._visit(queue, functools.partial(delete, queue))
            return removed

        result: int = self._call(run)
        return result

    def purge(self, queue_name: str) -> int:
        """Delete the messages of ``Q`` and ``Q.DQ``. Messages consumers hold (prefetched,
        or delayed until their ETA) are theirs: RabbitMQ cannot take them back."""
        name = q_name(queue_name)

        def run() -> int:
            if self._depths(name) is None:
                return 0
            return sum(self._channel.queue_purge(n).method.message_count
                       for n in (name, dq_name(name)))

        result: int = self._call(run)
        return result

    def close(self) -> None:
        with self._lock:
            self._drop()


def _letter(name: str, properties: Any, body: bytes) -> DeadLetter:
    """A message of ``Q.XQ`` as a :class:`DeadLetter` (reason from its options, or from
    RabbitMQ's ``x-death`` header when it was dead-lettered by a nack)."""
    death = _x_death(properties)
    try:
        message: Message[Any] | None = Message.decode(body)
        error = ""
    except DecodeError as e:
        message, error = None, str(e)
    options = message.options if message is not None else {}
    reason = options.get("failure_reason")
    if not isinstance(reason, str):
        reason = (f"undecodable: {error}" if message is None else
                  f"dead-lettered by RabbitMQ ({death.get('reason', 'unknown')}); "
                  "no reason recorded")
    failed_at = options.get("failed_at")
    if not isinstance(failed_at, int):
        when = death.get("time")
        failed_at = int(when.timestamp() * 1000) if isinstance(when, datetime.datetime) else None
    priority = options.get("priority", 0)
    message_id = message.message_id if message is not None else ""
    traceback = options.get("traceback")
    return DeadLetter(
        id=message_id, queue=name, message_id=message_id,
        actor_name=message.actor_name if message is not None else None,
        priority=priority if isinstance(priority, int) else 0, body=body, reason=reason,
        traceback=traceback if isinstance(traceback, str) else None, deliveries=None,
        failed_at=failed_at)


def _gone(entry: dict[str, Any]) -> bool:
    """Whether the entry's process is gone from this host (RabbitMQ requeued what it
    held when its connection dropped)."""
    if entry.get("host") != HOST or not isinstance(entry.get("pid"), int):
        return False
    import psutil  # here: every RabbitMQ worker imports this module

    return not psutil.pid_exists(entry["pid"])


def _x_death(properties: Any) -> dict[str, Any]:
    deaths = (getattr(properties, "headers", None) or {}).get("x-death")
    return deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}

"""liteq's own records on a RabbitMQ server: worker heartbeats and the queues producers declared.

AMQP cannot list queues or connections without the management plugin, so liteq keeps
two RabbitMQ **streams** (append-only logs every reader reads in full, from an offset
of its choice, without taking messages from anyone):

* ``liteq:workers`` (``x-max-age`` of one minute): every consumer publishes its registry
  entry there each :data:`HEARTBEAT_INTERVAL` seconds; ``liteq stats`` reads it from a
  time offset a few heartbeats back, so it answers at once.
* ``liteq:queues`` (at most :data:`QUEUES_MAX_BYTES`): a process records each queue the
  first time it declares it; readers read it from the start.

Streams need nothing but AMQP (RabbitMQ 3.9 or later). A colon cannot appear in a
Dramatiq queue name, so the names never meet a user's queue. A reader knows it has
read everything up to now by publishing a marker and reading until it comes back.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import secrets
import socket
import time
from typing import Any

import pika
import pika.exceptions

from .connection import CONNECTION_ERRORS, close_quietly

logger = logging.getLogger("liteq.RabbitmqBroker")

WORKERS_STREAM = "liteq:workers"
QUEUES_STREAM = "liteq:queues"
#: Seconds between two heartbeats of a consumer.
HEARTBEAT_INTERVAL = 1.0
#: Readers start this far back (ms) in ``liteq:workers`` and forget entries older than
#: it: a worker silent that long is gone (after ``STALE_AFTER_MS`` it is shown stale).
WORKER_WINDOW = 30_000
#: The queue records kept (bytes); old ones go first, live queues are recorded again
#: by every process that declares them.
QUEUES_MAX_BYTES = 8_000_000
#: Streams drop whole segments only: small segments make retention take effect.
SEGMENT_BYTES = 500_000

STREAM_ARGUMENTS = {
    WORKERS_STREAM: {"x-queue-type": "stream", "x-max-age": "60s",
                     "x-stream-max-segment-size-bytes": SEGMENT_BYTES},
    QUEUES_STREAM: {"x-queue-type": "stream", "x-max-length-bytes": QUEUES_MAX_BYTES,
                    "x-stream-max-segment-size-bytes": SEGMENT_BYTES},
}

HOST = socket.gethostname()
_PERSISTENT = pika.BasicProperties(delivery_mode=2)


def declare_stream(channel: Any, name: str) -> None:
    """Declare stream ``name``; the server closes ``channel`` if it cannot (no streams)."""
    channel.queue_declare(queue=name, durable=True, arguments=STREAM_ARGUMENTS[name])


def record_queue(connection: Any, queue_name: str) -> None:
    """Record in ``liteq:queues`` that ``queue_name`` exists, on a channel of its own (a
    server without streams closes that channel only). Failing to record is logged, not
    raised: the queue itself is declared."""
    try:
        channel = connection.channel()
    except CONNECTION_ERRORS:
        return
    try:
        declare_stream(channel, QUEUES_STREAM)
        channel.basic_publish("", QUEUES_STREAM, json.dumps(
            {"queue": queue_name, "pid": os.getpid(), "host": HOST,
             "at": int(time.time() * 1000)}).encode(), _PERSISTENT)
    except CONNECTION_ERRORS as e:
        logger.debug("could not record queue %s in %s: %s", queue_name, QUEUES_STREAM, e)
    finally:
        close_quietly(channel)


class Heartbeat:
    """A consumer's publisher of its registry entry, on its own channel of the consumer's
    connection (so a server without streams disables heartbeats, not the consumer)."""

    def __init__(self) -> None:
        self.owner = f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"
        self.started_at = int(time.time() * 1000)
        self._channel: Any = None
        self._disabled = False
        self.due = 0.0

    def attach(self, connection: Any) -> None:
        """Open the heartbeat channel on a new consumer connection and beat at once."""
        self._channel = None
        self.due = 0.0
        if self._disabled:
            return
        channel = connection.channel()
        try:
            declare_stream(channel, WORKERS_STREAM)
        except pika.exceptions.ChannelClosedByBroker as e:
            self._disabled = True
            logger.warning("the worker registry is off: RabbitMQ refused the stream %s "
                           "(streams need RabbitMQ 3.9 or later): %s", WORKERS_STREAM, e)
            return
        self._channel = channel

    def beat(self, entry: dict[str, Any], *, stopped: bool = False) -> None:
        """Publish ``entry`` (with the owner, pid, host and times) to ``liteq:workers``."""
        self.due = time.monotonic() + HEARTBEAT_INTERVAL
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        body = dict(entry, owner=self.owner, pid=os.getpid(), host=HOST,
                    started_at=self.started_at, heartbeat_at=int(time.time() * 1000),
                    stopped=stopped)
        channel.basic_publish("", WORKERS_STREAM, json.dumps(body).encode(), _PERSISTENT)


class StreamReader:
    """Reads a stream on ``channel`` from ``offset`` (``"first"`` or epoch ms), keeping
    what it read; :meth:`sync` returns once everything published before it was read."""

    def __init__(self, channel: Any, stream: str, offset: str | int) -> None:
        self.channel = channel
        self.stream = stream
        self.received: list[dict[str, Any]] = []
        self._markers: set[str] = set()
        self._last_tag = 0
        channel.basic_qos(prefetch_count=1000)
        start: Any = offset
        if isinstance(offset, int):
            start = datetime.datetime.fromtimestamp(offset / 1000, datetime.timezone.utc)
        self._tag = channel.basic_consume(stream, self._on_message, auto_ack=False,
                                          arguments={"x-stream-offset": start})

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._last_tag = method.delivery_tag
        try:
            record = json.loads(body)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        marker = record.get("marker")
        if isinstance(marker, str):
            self._markers.discard(marker)
            return
        self.received.append(record)

    def _ack(self) -> None:
        if self._last_tag:
            self.channel.basic_ack(self._last_tag, multiple=True)
            self._last_tag = 0

    def poll(self) -> list[dict[str, Any]]:
        """The records that arrived since the last call."""
        self.channel.connection.process_data_events(0)
        return self._take()

    def sync(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The records published up to now (a marker is published and read back)."""
        marker = secrets.token_hex(8)
        self._markers.add(marker)
        self.channel.basic_publish("", self.stream, json.dumps({"marker": marker}).encode())
        deadline = time.monotonic() + timeout
        connection = self.channel.connection
        while marker in self._markers and time.monotonic() < deadline:
            connection.process_data_events(0.01)
            self._ack()
        self._markers.discard(marker)
        return self._take()

    def close(self) -> None:
        """Stop reading. pika rejects the deliveries it has not handed over, which
        RabbitMQ refuses on a stream (closing the connection): hand them over first."""
        try:
            self.poll()
            self.channel.basic_cancel(self._tag)
        except Exception:  # noqa: BLE001 - a broken connection fails here in many ways
            pass

    def _take(self) -> list[dict[str, Any]]:
        self._ack()
        records, self.received = self.received, []
        return records

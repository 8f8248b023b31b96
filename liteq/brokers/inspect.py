"""What the operations tools read and change on any broker: the inspect contract.

``liteq stats``, ``queues``, ``top``, ``dlq …``, ``purge`` and the Prometheus queue
gauges read a broker only through an :class:`Inspector`, which every broker folder
implements (``brokers/<name>/inspect.py``, returned by ``broker.inspector()``). A
figure a broker cannot know is ``None`` — shown as "–" and given as JSON ``null`` —
never a guess.

The words, defined once and used by every view:

- **ready**: waiting in its queue, due now.
- **delayed**: due later (an ETA or a retry backoff); on Redis and RabbitMQ this includes
  delayed messages a consumer has fetched and holds until their ETA.
- **claimed**: taken by a consumer (leased, prefetched or held), running or not.
- **running**: a worker thread is executing it now (from the worker registry).
- **dead**: in the dead letters now.
- **succeeded**: lifetime count of attempts that returned (the message acknowledged).
- **failed**: lifetime count of attempts that raised or were failed by a middleware,
  whether or not the message was then retried.
- **retried**: lifetime count of failed attempts after which a retry was enqueued.
- **dead_lettered**: lifetime count of messages moved to the dead letters.

So ``failed == retried + dead_lettered`` when every failure goes through the Retries
middleware; a message's **deliveries** (times a consumer received it) differ from its
**retries** (times it was re-enqueued after failing, ``options["retries"]``).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

from ..errors import DecodeError
from ..message import Message

#: A worker whose heartbeat is older than this (ms) is stale: shown so, its running
#: messages no longer counted.
STALE_AFTER_MS = 10000

#: Called with the number of items done so far, for progress bars of long operations.
Progress = Callable[[int], None]

#: The fields of :class:`QueueCounts`, in display order.
COUNT_FIELDS = ("ready", "delayed", "claimed", "running", "dead", "succeeded", "failed",
                "retried", "dead_lettered")


@dataclasses.dataclass(frozen=True)
class QueueCounts:
    """The counts of one queue (see the module's definitions); ``None`` = not knowable."""

    ready: int | None = 0
    delayed: int | None = 0
    claimed: int | None = 0
    running: int | None = 0
    dead: int | None = 0
    succeeded: int | None = 0
    failed: int | None = 0
    retried: int | None = 0
    dead_lettered: int | None = 0

    def asdict(self) -> dict[str, int | None]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A message given up on, with why and when.

    ``id`` is the broker's handle for it, printed by ``dlq list`` and accepted by
    ``dlq show/requeue/purge``: the row id on SQLite, the message id elsewhere.
    """

    id: str
    queue: str
    message_id: str
    actor_name: str | None
    priority: int
    body: bytes
    reason: str
    traceback: str | None
    deliveries: int | None
    failed_at: int | None

    @property
    def message(self) -> Message[Any] | None:
        """The decoded message, or None when the body was what failed to decode."""
        try:
            return Message.decode(self.body)
        except DecodeError:
            return None


class Inspector(abc.ABC):
    """A broker seen by the operations tools: counts, workers, dead letters, purges.

    Reads never block a worker (no write lock, no consuming); the changing calls
    (requeue, purge) are safe while workers run.
    """

    #: The broker's URL with its credentials masked, for headers and ``stats``.
    url: str

    @abc.abstractmethod
    def queues(self) -> dict[str, QueueCounts]:
        """Counts of every known queue, by name."""

    @abc.abstractmethod
    def workers(self) -> list[dict[str, Any]]:
        """The worker registry: one entry per consumer with its latest heartbeat.

        An entry has ``owner``, ``pid``, ``host``, ``queues``, ``threads``,
        ``started_at`` and ``heartbeat_at`` (ms), ``running`` (actor names being
        executed), ``processed``, ``succeeded`` and ``failed`` (this consumer's
        attempts since it started) and ``activity`` (recent run-time p50/p95 per queue
        and recent failures, see :mod:`liteq.activity`).
        """

    def oldest_ready(self, queue_name: str) -> int | None:
        """ETA (ms) of the longest-waiting ready message of ``queue_name``, if knowable."""
        return None

    def storage(self) -> dict[str, Any] | None:
        """Facts about the broker's storage (file size, free pages…), or None."""
        return None

    @abc.abstractmethod
    def dead_letters(self, queue_name: str | None = None, limit: int | None = None
                     ) -> list[DeadLetter]:
        """Dead letters, oldest first, optionally of one queue and at most ``limit``."""

    def recent_dead(self, limit: int) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first."""
        return list(reversed(self.dead_letters()))[:limit]

    @abc.abstractmethod
    def dead_letter(self, dead_id: str) -> DeadLetter | None:
        """One dead letter by its :attr:`DeadLetter.id`, or None."""

    @abc.abstractmethod
    def requeue_dead(self, ids: list[str] | None = None, *, queue_name: str | None = None,
                     progress: Progress | None = None) -> int:
        """Put dead letters (``ids``, else all of ``queue_name``, else all) back on their
        queues as new ready messages; returns how many moved."""

    @abc.abstractmethod
    def purge_dead(self, ids: list[str] | None = None, *, queue_name: str | None = None,
                   progress: Progress | None = None) -> int:
        """Delete dead letters (``ids``, else all of ``queue_name``, else all) for good;
        returns how many."""

    @abc.abstractmethod
    def purge(self, queue_name: str) -> int:
        """Delete every ready, delayed and claimed message of ``queue_name`` (not its
        dead letters); returns how many were deleted (or were counted just before)."""

    def close(self) -> None:  # noqa: B027 - most inspectors share their broker's connection
        """Release the connections the inspector opened."""

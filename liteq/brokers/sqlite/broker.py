"""The SQLite broker: one database file is the queue (liteq's default broker).

Enqueue is one short transaction (or part of the caller's own transaction on the
same file); workers claim and acknowledge in batches through ``liteq.brokers.sqlite.lease``. The
SQL lives in ``liteq.brokers.sqlite.schema`` next to the indexes that serve it. :func:`release` and
:func:`forget_stale_workers` are what ``liteq worker``'s supervisor calls with a
child's :meth:`SqliteBroker.release_info`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import apsw

from ...broker import Broker
from ...common import current_millis
from ...errors import MessageTooLarge
from ...message import Message
from ...middleware.middleware import Middleware
from ...urls import mask_url
from ..inspect import DeadLetter, Progress
from . import counts
from . import dead_letters as dl
from . import schema as q
from .counts import Tally
from .db import Database
from .inspect import SqliteInspector
from .lease import SqliteConsumer, owner_prefix

if TYPE_CHECKING:
    from ...results.backend import ResultBackend

#: Dead letters are kept this long (ms) before they expire: 7 days, as in Dramatiq.
DEAD_LETTER_TTL = 7 * 24 * 3600 * 1000


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` to a file path."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite" or parsed.netloc not in ("", "localhost"):
        raise ValueError(f"not a sqlite URL: {mask_url(url)!r} "
                         "(expected sqlite:///path/to/file.db)")
    path = unquote(parsed.path)
    if path.startswith("//"):
        return path[1:]
    if not path.lstrip("/"):
        raise ValueError(f"the sqlite URL {mask_url(url)!r} names no file")
    return path[1:]


class SqliteBroker(Broker):
    """Queues in one SQLite file, with priorities, delays, leases and dead letters.

    ``durable=True`` commits with ``synchronous=FULL`` so that an OS crash or a power
    loss loses nothing either (a process crash loses nothing in any mode).
    ``lease_ms`` is the visibility timeout of a claimed message that its worker
    renews by heartbeat; ``max_deliveries`` bounds redeliveries of a message whose
    worker keeps dying. After a claim that empties the queue, a consumer waits
    ``batch_window_ms`` before claiming again, so that a steady stream of sends is
    claimed in batches instead of one write transaction per message (0 disables it;
    a message sent to an idle worker is picked up at once either way).
    ``join(queue)`` re-raises the exception of a message a worker of this process
    dead-lettered unless ``fail_fast_default=False`` (Dramatiq's stub broker's rule).
    """

    def __init__(
        self,
        path: str = "liteq.db",
        *,
        url: str | None = None,
        middleware: list[Middleware] | None = None,
        durable: bool = False,
        lease_ms: int = 30000,
        max_deliveries: int = 5,
        dead_letter_ttl: int = DEAD_LETTER_TTL,
        batch_window_ms: int = 3,
        fail_fast_default: bool = True,
    ) -> None:
        if url is not None:
            path = path_from_url(url)
        if lease_ms < 100:
            raise ValueError(f"lease_ms must be at least 100, got {lease_ms}")
        if max_deliveries < 1:
            raise ValueError(f"max_deliveries must be at least 1, got {max_deliveries}")
        if batch_window_ms < 0:
            raise ValueError(f"batch_window_ms must not be negative, got {batch_window_ms}")
        self.path = os.path.abspath(path)
        self.durable = durable
        self.lease_ms = lease_ms
        self.max_deliveries = max_deliveries
        self.dead_letter_ttl = dead_letter_ttl
        self.batch_window_ms = batch_window_ms
        self.db = Database.shared(self.path, durable=durable)
        self.db.open()
        self._tx = threading.local()
        super().__init__(middleware)
        self.fail_fast_default = fail_fast_default

    def __repr__(self) -> str:
        return f"SqliteBroker({self.path!r})"

    # -- queues and enqueue -----------------------------------------------------------
    def _create_queue(self, queue_name: str) -> None:
        self.db.execute(q.DECLARE_QUEUE, (queue_name, current_millis()))

    @staticmethod
    def _row(message: Message[Any], eta: int, priority: int) -> tuple[Any, ...]:
        now = current_millis()
        state = q.DELAYED if eta > now else q.READY
        return (message.queue_name, state, priority, eta, message.message_id,
                message.encode(), now)

    #: ``enqueue_many`` is one transaction: all of the messages, or none on error.
    atomic_batches = True
    default_prefetch = 32

    def _write(self, message: Message[Any], eta: int, priority: int, delay: int | None,
               connection: Any = None) -> None:
        """Insert ``message``'s row; ``enqueue(..., connection=conn)`` passes ``conn``.

        With ``connection`` (an apsw or ``sqlite3`` connection on this file, or the one
        set by :meth:`transaction`), the row is written in that connection's open
        transaction and exists only if the caller commits.
        """
        row = self._row(message, eta, priority)
        connection = connection or getattr(self._tx, "conn", None)
        if connection is None:
            db = self.db
            db.execute(q.INSERT_MESSAGE, row)
            db.local_enqueues += 1
        else:
            try:
                connection.execute(q.INSERT_MESSAGE, row)
            except apsw.TooBigError as e:
                raise MessageTooLarge(
                    f"message {message.message_id} ({len(row[5])} bytes encoded) is longer "
                    f"than SQLite's maximum length ({e}); nothing was written") from e

    def _write_batch(self, prepared: list[tuple[Message[Any], int, int]]) -> None:
        """Insert all the rows in one transaction."""
        self.db.write(counts.insert_counted, [self._row(*p) for p in prepared])
        self.db.local_enqueues += 1

    @contextlib.contextmanager
    def transaction(self, connection: Any) -> Iterator[Any]:
        """Within this block, this thread's sends are written through ``connection``.

        Use it to commit (or roll back) jobs together with your own rows::

            with conn:                      # your transaction on the same file
                conn.execute("INSERT INTO orders ...")
                with broker.transaction(conn):
                    process_order.send(order_id)
        """
        previous = getattr(self._tx, "conn", None)
        self._tx.conn = connection
        try:
            yield connection
        finally:
            self._tx.conn = previous

    # -- consuming --------------------------------------------------------------------
    def _consume(self, queue_names: list[str], *, prefetch: int,
                 timeout: int) -> SqliteConsumer:
        return SqliteConsumer(self, queue_names, prefetch=prefetch, timeout=timeout)

    def default_result_backend(self) -> ResultBackend:
        """Results are kept in this broker's own file (``Results()`` without a backend)."""
        from ...results.backends.sqlite import SqliteBackend

        return SqliteBackend(path=self.path, durable=self.durable)

    def release_info(self) -> dict[str, Any]:
        """What ``liteq worker``'s supervisor needs to release the messages of this
        process when it dies (see :func:`release`)."""
        return {"module": __name__, "path": self.path}

    def release_process(self, pid: int, running: Iterable[str] | None = None,
                        overran: Iterable[str] = ()) -> int:
        """Make the messages leased by process ``pid`` (which died) claimable at once.

        Those it was ``running`` (message ids; all of them when ``None``, unknown) become
        suspects that run alone; the others never started, so they run normally. Those
        that ``overran`` a hard time limit count a delivery.
        """
        prefix = owner_prefix(pid)
        running_json = None if running is None else json.dumps(list(running))
        overran_json = json.dumps(list(overran))

        def release(conn: Any) -> int:
            tally = Tally(counts.watermark(conn))
            released = conn.execute(q.RELEASE_OWNER,
                                    (prefix, running_json, overran_json)).fetchall()
            tally.moved(released, ready=1)
            tally.apply(conn)
            conn.execute(q.UNREGISTER_PROCESS, (prefix,))
            return len(released)

        changed = self.db.write(release)
        if changed:
            self.db.local_enqueues += 1
        return changed

    # -- joining, flushing, stats -------------------------------------------------------
    def _queue_busy(self, queue_name: str) -> bool:
        return bool(self.db.read(q.QUEUE_BUSY, (queue_name,) * 3)[0][0])

    def flush(self, queue_name: str) -> None:
        """Delete every message of ``queue_name`` (ready, delayed and running)."""
        self.db.write(counts.flush, queue_name)

    def flush_all(self) -> None:
        """Delete every message and every dead letter."""
        self.db.write(counts.flush, None)
        self.db.write(lambda conn: conn.execute("DELETE FROM liteq_dead_letters"))
        self._failures.clear()

    def inspector(self) -> SqliteInspector:
        """This broker seen by the operations tools (counts, workers, dead letters)."""
        return SqliteInspector(self)

    def stats(self) -> dict[str, dict[str, int | None]]:
        """Per queue: the :class:`~liteq.brokers.inspect.QueueCounts` as a dict."""
        return {name: c.asdict() for name, c in self.inspector().queues().items()}

    def oldest_ready(self, queue_name: str) -> int | None:
        """ETA (ms) of the longest-waiting ready message of ``queue_name``, or None."""
        return self.inspector().oldest_ready(queue_name)

    def workers(self) -> list[dict[str, Any]]:
        """The worker registry: one entry per consumer with its latest heartbeat."""
        return self.inspector().workers()

    def forget_stale_workers(self, older_than_ms: int = 60000) -> int:
        """Drop registry entries whose heartbeat is older than ``older_than_ms``."""
        cutoff = current_millis() - older_than_ms

        def forget(conn: apsw.Connection) -> int:
            conn.execute(q.DELETE_STALE_WORKERS, (cutoff,))
            return conn.changes()

        return self.db.write(forget)

    # -- dead letters -------------------------------------------------------------------
    @property
    def dead_letters(self) -> list[Message[Any]]:
        """Every dead-lettered message that still decodes, oldest first."""
        return [m for d in dl.iter_dead(self.db) if (m := d.message) is not None]

    def list_dead_letters(self, queue: str | None = None, limit: int | None = None
                          ) -> list[DeadLetter]:
        """Dead letters with their reason and traceback, oldest first."""
        return self.inspector().dead_letters(queue, limit)

    def get_dead_letter(self, dead_id: int | str) -> DeadLetter | None:
        return self.inspector().dead_letter(str(dead_id))

    def requeue_dead_letters(self, ids: list[int] | list[str] | None = None, *,
                             queue: str | None = None, progress: Progress | None = None
                             ) -> int:
        """Move dead letters (given ids, or all of ``queue``, or all) back to their queues;
        ``join`` forgets the failures it would have re-raised."""
        return self.inspector().requeue_dead(
            None if ids is None else [str(i) for i in ids], queue_name=queue,
            progress=progress)

    def purge_dead_letters(self, ids: list[int] | list[str] | None = None, *,
                           queue: str | None = None, progress: Progress | None = None) -> int:
        """Delete dead letters (given ids, or all of ``queue``, or all); ``join`` forgets
        the failures it would have re-raised."""
        return self.inspector().purge_dead(
            None if ids is None else [str(i) for i in ids], queue_name=queue,
            progress=progress)

    def close(self) -> None:
        self.db.close()


def _open_for_supervisor(info: dict[str, Any]) -> SqliteBroker:
    return SqliteBroker(info["path"], middleware=[])


def release(info: dict[str, Any], pid: int, running: Iterable[str] | None = None,
            overran: Iterable[str] = ()) -> int:
    """Release the leases of dead process ``pid`` on the file of ``info`` (a broker's
    :meth:`SqliteBroker.release_info`); see :meth:`SqliteBroker.release_process`.
    Returns how many messages were released."""
    broker = _open_for_supervisor(info)
    try:
        return broker.release_process(pid, running, overran)
    finally:
        # Never hold a connection across fork(): each use opens and closes it.
        broker.db.close()


def forget_stale_workers(info: dict[str, Any]) -> int:
    """Drop stale worker registry entries of the file of ``info`` (supervisor start)."""
    broker = _open_for_supervisor(info)
    try:
        return broker.forget_stale_workers()
    finally:
        broker.db.close()

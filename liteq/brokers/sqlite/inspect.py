"""The SQLite broker seen by the operations tools (:mod:`liteq.brokers.inspect`).

Every read is a plain WAL read (never the write lock): counters and the ready/delayed
counts from ``liteq_queues`` (see :mod:`.counts`), claimed = leased rows, running = what
the live entries of the worker registry report, dead = rows of ``liteq_dead_letters``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import apsw

from ...common import current_millis
from ...errors import InvalidDeadLetterId
from ...urls import mask_url
from ..inspect import STALE_AFTER_MS, DeadLetter, Inspector, Progress, QueueCounts
from . import counts
from . import dead_letters as dl
from . import schema as q

if TYPE_CHECKING:
    from .broker import SqliteBroker

#: The columns of ``LIST_WORKERS``, in order; the JSON ones are decoded.
_WORKER_KEYS = ("owner", "pid", "host", "queues", "threads", "started_at", "heartbeat_at",
                "running", "running_queues", "processed", "succeeded", "failed", "activity")
_JSON_KEYS = ("queues", "running", "running_queues", "activity")


def row_ids(ids: list[str]) -> list[int]:
    """Dead-letter ids (text) as row numbers; anything else is refused by name."""
    result = []
    for dead_id in ids:
        text = str(dead_id).strip()
        if not text.isdigit():
            raise InvalidDeadLetterId(
                f"{dead_id!r} is not a dead-letter id of the SQLite broker (a row number, "
                "as `liteq dlq list` prints)")
        result.append(int(text))
    return result


class SqliteInspector(Inspector):
    """Counts, workers and dead letters of one SQLite broker's file, through its
    connection (``close`` leaves it to the broker)."""

    def __init__(self, broker: SqliteBroker) -> None:
        self.broker = broker
        self.db = broker.db
        self.url = mask_url(f"sqlite:///{broker.path}")

    # -- reads -------------------------------------------------------------------------
    def queues(self) -> dict[str, QueueCounts]:
        found: dict[str, dict[str, int]] = {}

        def read(conn: apsw.Connection) -> None:
            for name, succeeded, failed, retried, dead_lettered in conn.execute(q.COUNTERS):
                found[name] = {"succeeded": succeeded, "failed": failed, "retried": retried,
                               "dead_lettered": dead_lettered}
            for name, (ready, delayed) in counts.read(conn).items():
                found.setdefault(name, {}).update(ready=ready, delayed=delayed)
            for name, count in conn.execute(q.COUNT_CLAIMED):
                found.setdefault(name, {})["claimed"] = count
            for name, count in conn.execute(q.COUNT_DEAD):
                found.setdefault(name, {})["dead"] = count

        self.db.read_with(read)
        for name, count in self._running().items():
            found.setdefault(name, {})["running"] = count
        return {name: QueueCounts(**figures) for name, figures in found.items()}

    def _running(self) -> dict[str, int]:
        """Messages being executed, per queue, over the live registry entries."""
        cutoff = current_millis() - STALE_AFTER_MS
        running: dict[str, int] = {}
        for entry in self.workers():
            if entry["heartbeat_at"] >= cutoff:
                for name, n in entry["running_queues"].items():
                    running[name] = running.get(name, 0) + n
        return running

    def workers(self) -> list[dict[str, Any]]:
        entries = []
        for row in self.db.read(q.LIST_WORKERS):
            entry = dict(zip(_WORKER_KEYS, row, strict=True))
            for key in _JSON_KEYS:
                entry[key] = json.loads(entry[key])
            entries.append(entry)
        return entries

    def oldest_ready(self, queue_name: str) -> int | None:
        """Index seeks only (one per distinct priority), so it stays cheap at any depth."""
        eta: int | None = self.db.read(q.OLDEST_READY, (queue_name,))[0][0]
        return eta

    def storage(self) -> dict[str, Any]:
        """The file's size and pages (``free_pages`` is what ``liteq compact`` returns)."""
        page_size, pages, free = self.db.read(
            "SELECT * FROM pragma_page_size(), pragma_page_count(), pragma_freelist_count()")[0]
        return {"path": self.broker.path, "file_bytes": os.path.getsize(self.broker.path),
                "page_size": page_size, "pages": pages, "free_pages": free}

    # -- dead letters ------------------------------------------------------------------
    def dead_letters(self, queue_name: str | None = None, limit: int | None = None
                     ) -> list[DeadLetter]:
        return list(dl.iter_dead(self.db, queue_name, limit))

    def recent_dead(self, limit: int) -> list[DeadLetter]:
        return dl.newest(self.db, limit)

    def dead_letter(self, dead_id: str) -> DeadLetter | None:
        return dl.get_dead(self.db, row_ids([dead_id])[0])

    def _selected(self, ids: list[str] | None, queue_name: str | None) -> list[int]:
        return row_ids(ids) if ids is not None else dl.ids_of(self.db, queue_name)

    def requeue_dead(self, ids: list[str] | None = None, *, queue_name: str | None = None,
                     progress: Progress | None = None) -> int:
        """Also makes the broker's ``join`` forget the failures it would have re-raised."""
        selected = self._selected(ids, queue_name)
        self.broker._failures.clear()
        return dl.requeue(self.db, selected, progress)

    def purge_dead(self, ids: list[str] | None = None, *, queue_name: str | None = None,
                   progress: Progress | None = None) -> int:
        """Also makes the broker's ``join`` forget the failures it would have re-raised."""
        selected = self._selected(ids, queue_name)
        self.broker._failures.clear()
        return dl.purge(self.db, selected, progress)

    # -- purge -------------------------------------------------------------------------
    def purge(self, queue_name: str) -> int:
        def purge(conn: apsw.Connection) -> int:
            # apsw types fetchone() as Optional; count(*) always returns one row
            count: int = conn.execute(q.COUNT_QUEUE, (queue_name,)).fetchone()[0]  # type: ignore[index]
            counts.flush(conn, queue_name)
            return count

        return self.db.write(purge)

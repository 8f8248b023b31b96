"""Dead letters of the SQLite broker: listing, requeueing and purging, in batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import apsw

from ...common import current_millis
from ...errors import DecodeError
from ...message import Message
from . import schema as q
from .db import Database

Progress = Callable[[int], None]
BATCH = 500


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A message that was given up on, with why and when."""

    id: int
    queue: str
    message_id: str
    actor_name: str | None
    priority: int
    body: bytes
    reason: str
    traceback: str | None
    deliveries: int
    failed_at: int

    @property
    def message(self) -> Message[Any] | None:
        """The decoded message, or None when the body was what failed to decode."""
        try:
            return Message.decode(self.body)
        except DecodeError:
            return None


def iter_dead(db: Database, queue: str | None = None, limit: int | None = None
              ) -> Iterator[DeadLetter]:
    """Dead letters oldest first, optionally of one queue, read in batches."""
    after, remaining = 0, limit
    while remaining is None or remaining > 0:
        size = BATCH if remaining is None else min(BATCH, remaining)
        rows = db.read(q.LIST_DEAD, (queue, after, size))
        for row in rows:
            yield DeadLetter(*row)
        if len(rows) < size:
            return
        after = rows[-1][0]
        if remaining is not None:
            remaining -= len(rows)


def get_dead(db: Database, dead_id: int) -> DeadLetter | None:
    rows = db.read(q.GET_DEAD, (None, 0, 1, dead_id))
    return DeadLetter(*rows[0]) if rows else None


def requeue(db: Database, ids: list[int], progress: Progress | None = None) -> int:
    """Put dead letters back on their queues as new ready messages; returns how many."""
    moved = 0
    for start in range(0, len(ids), BATCH):
        moved += db.write(_requeue_batch, ids[start:start + BATCH])
        if progress:
            progress(min(start + BATCH, len(ids)))
    db.local_enqueues += 1
    return moved


def _requeue_batch(conn: apsw.Connection, ids: list[int]) -> int:
    now = current_millis()
    moved = 0
    for dead_id in ids:
        row = conn.execute(q.GET_DEAD, (None, 0, 1, dead_id)).fetchone()
        if row is None:
            continue
        letter = DeadLetter(*row)
        conn.execute(q.INSERT_MESSAGE, (letter.queue, q.READY, letter.priority, now,
                                        letter.message_id, letter.body, now))
        conn.execute(q.DELETE_DEAD, (dead_id,))
        moved += 1
    return moved


def purge(db: Database, ids: list[int], progress: Progress | None = None) -> int:
    """Delete the given dead letters for good; returns how many."""
    removed = 0
    for start in range(0, len(ids), BATCH):
        batch = [(i,) for i in ids[start:start + BATCH]]
        removed += db.write(_delete_batch, batch)
        if progress:
            progress(min(start + BATCH, len(ids)))
    return removed


def _delete_batch(conn: apsw.Connection, batch: list[tuple[int]]) -> int:
    before = conn.total_changes()
    conn.executemany(q.DELETE_DEAD, batch)
    return conn.total_changes() - before


def ids_of(db: Database, queue: str | None = None) -> list[int]:
    """Ids of all dead letters (of one queue)."""
    return [d.id for d in iter_dead(db, queue)]

"""Dead letters of the SQLite broker: listing, requeueing and purging, in batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apsw

from ...common import current_millis
from ..failure import requeued_body
from ..inspect import DeadLetter, Progress
from . import schema as q
from .db import Database

BATCH = 500


def _letter(row: tuple[Any, ...]) -> DeadLetter:
    """A ``LIST_DEAD`` row as the inspect contract's :class:`DeadLetter` (id as text)."""
    return DeadLetter(str(row[0]), *row[1:])


def iter_dead(db: Database, queue: str | None = None, limit: int | None = None
              ) -> Iterator[DeadLetter]:
    """Dead letters oldest first, optionally of one queue, read in batches."""
    after, remaining = 0, limit
    while remaining is None or remaining > 0:
        size = BATCH if remaining is None else min(BATCH, remaining)
        rows = db.read(q.LIST_DEAD, (queue, after, size))
        for row in rows:
            yield _letter(row)
        if len(rows) < size:
            return
        after = rows[-1][0]
        if remaining is not None:
            remaining -= len(rows)


def get_dead(db: Database, dead_id: int) -> DeadLetter | None:
    rows = db.read(q.GET_DEAD, (None, 0, 1, dead_id))
    return _letter(rows[0]) if rows else None


def newest(db: Database, limit: int) -> list[DeadLetter]:
    """The newest ``limit`` dead letters, newest first (a rowid range read)."""
    return [_letter(row) for row in db.read(q.NEWEST_DEAD, (limit,))]


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
        letter = _letter(row)
        conn.execute(q.INSERT_MESSAGE, (letter.queue, q.READY, letter.priority, now,
                                        letter.message_id, requeued_body(letter.body), now))
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
    return [int(d.id) for d in iter_dead(db, queue)]

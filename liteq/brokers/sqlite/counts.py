"""Per-queue ready and delayed counts that cost the enqueue path nothing.

Rows with an id up to a watermark are counted in ``liteq_queues``. Each batched
transition (promote, claim, lease lapse, release, return) adjusts those counters for
the rows it moves that are at or below the watermark. Rows above it, the recent sends,
are folded in by the consumers about once a second: counted in the state they have
then, after which the watermark moves to the highest id. A single send therefore
stays one INSERT (a counter update in every enqueue would cost 16 % of its rate).
The row at the watermark is never deleted but turned into a tombstone until the next
fold, so SQLite never hands out an id at or below the watermark again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apsw

from . import schema as q


def watermark(conn: apsw.Connection) -> int:
    """The highest id whose row is already counted in ``liteq_queues``."""
    # apsw types fetchone() as Optional Any; the watermark row always exists
    return conn.execute(q.WATERMARK).fetchone()[0]  # type: ignore[index,no-any-return]


class Tally:
    """Counter changes of one transaction, for rows at or below the watermark."""

    __slots__ = ("watermark", "deltas")

    def __init__(self, watermark: int) -> None:
        self.watermark = watermark
        self.deltas: dict[str, list[int]] = {}

    def move(self, row_id: int, queue: str, ready: int = 0, delayed: int = 0) -> None:
        """Record that row ``row_id`` of ``queue`` left or entered the ready/delayed states."""
        if row_id <= self.watermark:
            self._add(queue, ready, delayed)

    def moved_from(self, queue: str, rows: list[tuple[Any, ...]], ready: int = 0) -> None:
        """:meth:`move` for each SQL row ``(id, ...)`` of ``rows``, all of ``queue``
        (a claim's batch: one count instead of a call per row)."""
        mark = self.watermark
        counted = sum(1 for row in rows if row[0] <= mark)
        if counted:
            self._add(queue, ready * counted, 0)

    def _add(self, queue: str, ready: int, delayed: int) -> None:
        delta = self.deltas.get(queue)
        if delta is None:
            delta = self.deltas[queue] = [0, 0]
        delta[0] += ready
        delta[1] += delayed

    def moved(self, rows: Iterable[tuple[Any, ...]], ready: int = 0, delayed: int = 0) -> None:
        """:meth:`move` for each SQL row ``(id, queue)`` of ``rows``."""
        for row_id, queue in rows:
            self.move(row_id, queue, ready, delayed)

    def apply(self, conn: apsw.Connection) -> None:
        if self.deltas:
            conn.executemany(q.ADD_COUNTS, [(name, r, d) for name, (r, d) in self.deltas.items()
                                            if r or d])


#: Above this many new rows, the tail is counted from the indexes rather than the table.
SMALL_TAIL = 10000


def _tail(conn: apsw.Connection, mark: int, top: int) -> dict[str, list[int]]:
    """``{queue: [ready, delayed]}`` of the rows with ``mark < id <= top``."""
    tally: dict[str, list[int]] = {}
    if top <= mark:
        return tally
    rows: list[tuple[Any, ...]]
    if top - mark <= SMALL_TAIL:
        rows = conn.execute(q.TAIL_COUNTS, (mark,)).fetchall()
    else:
        rows = (conn.execute(q.TAIL_READY, (mark,)).fetchall()
                + conn.execute(q.TAIL_DELAYED, (mark,)).fetchall())
    for queue, state, count in rows:
        tally.setdefault(queue, [0, 0])[state == q.DELAYED] += count
    return tally


def fold(conn: apsw.Connection) -> None:
    """Count the rows above the watermark and move it to the highest id (in a write txn)."""
    mark = watermark(conn)
    top: int = conn.execute(q.MAX_ID).fetchone()[0]  # type: ignore[index]  # MAX: one row
    if top <= mark:
        return
    tally = _tail(conn, mark, top)
    conn.executemany(q.ADD_COUNTS, [(name, r, d) for name, (r, d) in tally.items()])
    conn.execute(q.SET_WATERMARK, (top,))
    conn.execute(q.DROP_TOMBSTONES, (top,))


def insert_counted(conn: apsw.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert a batch of ``INSERT_MESSAGE`` rows and count them at once, so that bulk
    sends never pile up uncounted even when no consumer runs."""
    fold(conn)
    conn.executemany(q.INSERT_MESSAGE, rows)
    tally: dict[str, list[int]] = {}
    for row in rows:
        tally.setdefault(row[0], [0, 0])[row[1] == q.DELAYED] += 1
    conn.executemany(q.ADD_COUNTS, [(name, r, d) for name, (r, d) in tally.items()])
    top: int = conn.execute(q.MAX_ID).fetchone()[0]  # type: ignore[index]  # MAX: one row
    conn.execute(q.SET_WATERMARK, (top,))


def remove_leased(conn: apsw.Connection, mark: int, row_id: int, token: int) -> bool:
    """Delete a leased row held with ``token`` (a tombstone if it is the watermark row)."""
    conn.execute(q.TOMBSTONE_LEASED if row_id == mark else q.ACK, (row_id, token))
    return bool(conn.changes())


def remove(conn: apsw.Connection, mark: int, row_id: int) -> None:
    """Delete a row whatever its lease (a tombstone if it is the watermark row)."""
    conn.execute(q.TOMBSTONE_ROW if row_id == mark else q.DELETE_MESSAGE, (row_id,))


def flush(conn: apsw.Connection, queue: str | None) -> None:
    """Delete every message (of ``queue``) and zero the counts, keeping the watermark row."""
    mark = watermark(conn)
    if queue is None:
        conn.execute(q.FLUSH_ALL, (mark,))
        conn.execute(q.TOMBSTONE_ROW, (mark,))
    else:
        conn.execute(q.FLUSH_QUEUE, (queue, mark))
        conn.execute(q.TOMBSTONE_ROW + " AND queue = ?", (mark, queue))
    conn.execute(q.CLEAR_COUNTS, (queue,))


def read(conn: apsw.Connection) -> dict[str, list[int]]:
    """``{queue: [ready, delayed]}``: the counters plus the not yet folded rows.

    Run it inside one read transaction so counters and tail agree.
    """
    result: dict[str, list[int]] = {}
    for queue, ready, delayed in conn.execute(q.COUNTED):
        result[queue] = [ready, delayed]
    mark = watermark(conn)
    top: int = conn.execute(q.MAX_ID).fetchone()[0]  # type: ignore[index]  # MAX: one row
    for queue, (ready, delayed) in _tail(conn, mark, top).items():
        counted = result.setdefault(queue, [0, 0])
        counted[0] += ready
        counted[1] += delayed
    return result

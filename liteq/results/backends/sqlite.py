"""A result backend in a SQLite file, by default the broker's own file.

Writes go through the process's shared write connection (``Database.shared``), so the
results table lives beside the broker's tables without a second writer competing for
the file's lock. Reads never open a write transaction; blocking waits poll with backoff.
"""

from __future__ import annotations

from typing import Any

import apsw

from ...brokers.sqlite import schema as q
from ...brokers.sqlite.db import Database
from ...common import current_millis
from ...encoder import Encoder
from ..backend import Missing, ResultBackend

#: Expired rows are purged at most this often (ms), at most this many per purge, so
#: that no store holds the write lock for long.
PURGE_INTERVAL = 60000
PURGE_BATCH = 10000


class SqliteBackend(ResultBackend):
    """Stores results in table ``liteq_results`` of the database file at ``path``.

    Give ``durable=True`` when the file is a durable broker's, so both share one connection.
    """

    poll_max = 0.05

    def __init__(
        self,
        path: str = "liteq.db",
        *,
        namespace: str = "liteq-results",
        encoder: Encoder | None = None,
        durable: bool = False,
    ) -> None:
        super().__init__(namespace=namespace, encoder=encoder)
        self.path = path
        self.db = Database.shared(path, durable=durable)
        self._next_purge = 0

    def _get(self, key: str) -> Any:
        rows = self.db.read(q.SELECT_RESULT, (key, current_millis()))
        if not rows:
            return Missing
        return self.encoder.decode(rows[0][0])

    def _store(self, key: str, value: Any, ttl: int) -> None:
        data = self.encoder.encode(value)
        now = current_millis()
        purge = now >= self._next_purge
        if purge:
            self._next_purge = now + PURGE_INTERVAL
        purged = self.db.write(_store, key, data, now + ttl, now if purge else None)
        if purged >= PURGE_BATCH:
            self._next_purge = 0


def _store(
    conn: apsw.Connection, key: str, data: bytes, expires_at: int, purge_before: int | None
) -> int:
    """Upsert one result; with ``purge_before``, also delete a batch of expired rows."""
    conn.execute(q.UPSERT_RESULT, (key, data, expires_at))
    if purge_before is None:
        return 0
    conn.execute(q.PURGE_RESULTS, (purge_before, PURGE_BATCH))
    return conn.changes()

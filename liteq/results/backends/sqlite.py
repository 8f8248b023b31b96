"""A result backend in a SQLite file, by default the broker's own file.

Writes go through the process's shared write connection (``Database.shared``), so the
results table lives beside the broker's tables without a second writer competing for
the file's lock. Reads never open a write transaction; blocking waits poll with backoff.
"""

from __future__ import annotations

import threading
from typing import Any

import apsw

from ...common import current_millis
from ...db import Database
from ...encoder import Encoder
from ..backend import Missing, ResultBackend

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS liteq_results (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at INTEGER NOT NULL
)
"""
CREATE_EXPIRY_INDEX = (
    "CREATE INDEX IF NOT EXISTS liteq_results_expires_at ON liteq_results (expires_at)"
)
SELECT_RESULT = "SELECT value FROM liteq_results WHERE key = ? AND expires_at > ?"
UPSERT_RESULT = "INSERT OR REPLACE INTO liteq_results (key, value, expires_at) VALUES (?, ?, ?)"
PURGE_EXPIRED = """
DELETE FROM liteq_results WHERE rowid IN (
    SELECT rowid FROM liteq_results WHERE expires_at <= ? LIMIT ?
)
"""

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
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._next_purge = 0

    def _ensure_schema(self) -> None:
        """Create the table on first use (not at construction, so that a broker that
        checks a new file's schema gets to create it first)."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self.db.write(_create_schema)
                self._schema_ready = True

    def _get(self, key: str) -> Any:
        self._ensure_schema()
        rows = self.db.read(SELECT_RESULT, (key, current_millis()))
        if not rows:
            return Missing
        return self.encoder.decode(rows[0][0])

    def _store(self, key: str, value: Any, ttl: int) -> None:
        self._ensure_schema()
        data = self.encoder.encode(value)
        now = current_millis()
        purge = now >= self._next_purge
        if purge:
            self._next_purge = now + PURGE_INTERVAL
        purged = self.db.write(_store, key, data, now + ttl, now if purge else None)
        if purged >= PURGE_BATCH:
            self._next_purge = 0


def _create_schema(conn: apsw.Connection) -> None:
    conn.execute(CREATE_TABLE)
    conn.execute(CREATE_EXPIRY_INDEX)


def _store(
    conn: apsw.Connection, key: str, data: bytes, expires_at: int, purge_before: int | None
) -> int:
    """Upsert one result; with ``purge_before``, also delete a batch of expired rows."""
    conn.execute(UPSERT_RESULT, (key, data, expires_at))
    if purge_before is None:
        return 0
    conn.execute(PURGE_EXPIRED, (purge_before, PURGE_BATCH))
    return conn.changes()

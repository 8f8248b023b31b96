"""The ``redis`` the Suna actors write to: Redis when ``REDIS_URL`` is set, else SQLite.

``LocalRedis`` implements the few asyncio Redis commands the actors use (``set`` with
``ex``, ``get``, ``append``, ``delete``) on a small SQLite file, so the example runs
without a server and its effects can be inspected (``SUNA_STATE_DB``, default
``./suna_state.db``) from any process.
"""

import asyncio
import os
import sqlite3
import time


class LocalRedis:
    """A tiny stand-in for ``redis.asyncio.Redis`` on a SQLite table (decoded strings)."""

    def __init__(self, path):
        self.path = path
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS kv ("
                " key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL)"
            )

    def _connect(self):
        return sqlite3.connect(self.path, timeout=30)

    def _run(self, sql, params=()):
        conn = self._connect()
        try:
            with conn:
                return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    async def set(self, key, value, ex=None):
        expires_at = time.time() + ex if ex else None
        await asyncio.to_thread(
            self._run, "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (key, str(value), expires_at)
        )
        return True

    async def get(self, key):
        rows = await asyncio.to_thread(
            self._run,
            "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (key, time.time()),
        )
        return rows[0][0] if rows else None

    async def append(self, key, value):
        await asyncio.to_thread(
            self._run,
            "INSERT INTO kv VALUES (?, ?, NULL)"
            " ON CONFLICT(key) DO UPDATE SET value = value || excluded.value",
            (key, str(value)),
        )

    async def delete(self, key):
        await asyncio.to_thread(self._run, "DELETE FROM kv WHERE key = ?", (key,))


def connect():
    url = os.getenv("REDIS_URL")
    if url:
        import redis.asyncio

        return redis.asyncio.Redis.from_url(url, decode_responses=True)
    return LocalRedis(os.getenv("SUNA_STATE_DB", "suna_state.db"))


redis = connect()

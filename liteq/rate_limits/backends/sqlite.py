"""A rate-limiter backend in a SQLite file, shareable by every process on the machine.

Each operation is one write transaction on the process's shared connection
(``Database.shared``), which makes it atomic across threads and processes. Waiting for
a notification polls with backoff and never takes the write lock.
"""

from __future__ import annotations

import time

import apsw

from ...brokers.sqlite import schema as q
from ...brokers.sqlite.db import Database
from ...common import current_millis
from ..backend import Keys, RateLimiterBackend, resolve_keys

#: Expired keys (old buckets, stale notifications) are purged at most this often (ms),
#: at most this many per purge.
PURGE_INTERVAL = 60000
PURGE_BATCH = 10000

_POLL_START = 0.001
_POLL_MAX = 0.05


class SqliteBackend(RateLimiterBackend):
    """Keeps counters in table ``liteq_rate_limits`` of the database file at ``path``.

    Give ``durable=True`` when the file is a durable broker's, so both share one connection.
    """

    def __init__(self, path: str = "liteq.db", *, durable: bool = False) -> None:
        self.path = path
        self.db = Database.shared(path, durable=durable)
        self._next_purge = 0

    def _purge_before(self, now: int) -> int | None:
        """``now`` when this operation should also purge expired keys, else None."""
        if now < self._next_purge:
            return None
        self._next_purge = now + PURGE_INTERVAL
        return now

    def add(self, key: str, value: int, ttl: int) -> bool:
        now = current_millis()
        return self.db.write(_add, key, value, now, ttl, self._purge_before(now))

    def incr(self, key: str, amount: int, maximum: int, ttl: int) -> bool:
        now = current_millis()
        return self.db.write(_change, key, (), amount, None, maximum, now, ttl,
                             self._purge_before(now))

    def decr(self, key: str, amount: int, minimum: int, ttl: int) -> bool:
        now = current_millis()
        return self.db.write(_change, key, (), -amount, minimum, None, now, ttl,
                             self._purge_before(now))

    def incr_and_sum(self, key: str, keys: Keys, amount: int, maximum: int, ttl: int) -> bool:
        now = current_millis()
        return self.db.write(_change, key, tuple(resolve_keys(keys)), amount, None, maximum,
                             now, ttl, self._purge_before(now))

    def wait(self, key: str, timeout: int | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        pause = _POLL_START
        while not self.db.read(q.SELECT_LIMIT, (key, current_millis())):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            time.sleep(pause if remaining is None else min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX)
        return True

    def wait_notify(self, key: str, ttl: int) -> None:
        now = current_millis()
        self.db.write(_set, key, 1, now + ttl)


def _value(conn: apsw.Connection, key: str, now: int) -> int | None:
    row = conn.execute(q.SELECT_LIMIT, (key, now)).fetchone()
    return None if row is None else row[0]


def _set(conn: apsw.Connection, key: str, value: int, expires_at: int) -> None:
    conn.execute(q.UPSERT_LIMIT, (key, value, expires_at))


def _purge(conn: apsw.Connection, before: int | None) -> None:
    if before is not None:
        conn.execute(q.PURGE_LIMITS, (before, PURGE_BATCH))


def _add(conn: apsw.Connection, key: str, value: int, now: int, ttl: int,
         purge_before: int | None) -> bool:
    _purge(conn, purge_before)
    if _value(conn, key, now) is not None:
        return False
    _set(conn, key, value, now + ttl)
    return True


def _change(conn: apsw.Connection, key: str, sum_keys: tuple[str, ...], amount: int,
            minimum: int | None, maximum: int | None, now: int, ttl: int,
            purge_before: int | None) -> bool:
    """Add ``amount`` (negative to subtract) to ``key`` if it, and ``amount`` plus the
    sum of ``sum_keys``, stay within ``minimum``..``maximum``."""
    _purge(conn, purge_before)
    value = (_value(conn, key, now) or 0) + amount
    if minimum is not None and value < minimum:
        return False
    if maximum is not None:
        total = amount + sum(_value(conn, k, now) or 0 for k in sum_keys)
        if value > maximum or total > maximum:
            return False
    _set(conn, key, value, now + ttl)
    return True

"""SQLite connections: WAL, a microsecond-scale busy handler, retried write transactions.

One ``Database`` per file per process holds the single write connection every liteq
component in that process shares (broker, result backend, rate limiters), guarded by
a lock, because SQLite has one write lock per file and two connections of one process
fighting for it only add waiting. After ``fork`` a child opens its own connection.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import apsw

from ...errors import (
    DatabaseCorrupt,
    DatabaseError,
    DatabaseFull,
    DatabaseReadOnly,
    DatabaseUnavailable,
    MessageTooLarge,
)
from .schema import AUTO_VACUUM, check, migrate

T = TypeVar("T")

#: How long one write transaction may wait for the lock before liteq gives up.
WRITE_TIMEOUT = 60.0
_BUSY_SLICE = 2.0


def _busy_handler() -> Callable[[int], bool]:
    """Sleep 20 µs, doubling to 1 ms, for up to ``_BUSY_SLICE`` seconds per attempt."""
    started = [0.0]

    def handler(count: int) -> bool:
        now = time.monotonic()
        if count == 0:
            started[0] = now
        elif now - started[0] > _BUSY_SLICE:
            return False
        time.sleep(min(0.00002 * (2 ** min(count, 6)), 0.001))
        return True

    return handler


def create_private_file(path: str) -> None:
    """Create ``path`` with mode 0600 if missing (SQLite gives -wal/-shm the same mode)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise DatabaseUnavailable(f"cannot create database {path!r}: {directory} does not exist")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as e:
        error = DatabaseReadOnly if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) \
            else DatabaseUnavailable
        raise error(f"cannot create database {path!r}: {e.strerror}") from e
    os.close(fd)


def _writable(path: str) -> bool:
    """Whether ``path`` (if it exists) and its directory can be written (``access(2)``
    sees read-only mounts and immutable files even for root)."""
    directory = os.path.dirname(os.path.abspath(path))
    return os.access(directory, os.W_OK) and (
        not os.path.exists(path) or os.access(path, os.W_OK))


def database_error(error: apsw.Error, path: str, doing: str = "write") -> DatabaseError | \
        MessageTooLarge:
    """liteq's named error for SQLite's ``error`` on ``path`` (its text included)."""
    if isinstance(error, (apsw.CorruptError, apsw.NotADBError)):
        return DatabaseCorrupt(
            f"database {path!r} is corrupt ({error}); liteq will not use it: restore it "
            "from a backup or salvage it with the sqlite3 shell's .recover")
    if isinstance(error, apsw.FullError):
        return DatabaseFull(f"cannot {doing} database {path!r}: the disk is full ({error})")
    if isinstance(error, apsw.TooBigError):
        return MessageTooLarge(
            f"cannot {doing} database {path!r}: a value is longer than SQLite's maximum "
            f"length ({error}); nothing was written")
    if isinstance(error, apsw.ReadOnlyError) or (
            isinstance(error, (apsw.CantOpenError, apsw.IOError)) and not _writable(path)):
        return DatabaseReadOnly(
            f"cannot {doing} database {path!r}: it or its directory is read-only ({error}); "
            "liteq needs to write the file and create its -wal and -shm files next to it")
    return DatabaseUnavailable(f"cannot {doing} database {path!r}: {error}")


def _file_pragma(conn: apsw.Connection, sql: str) -> None:
    """Run a pragma that writes the file header, retried: like ``journal_mode=WAL`` it
    needs the file to itself for a moment and can fail at once (busy handler or not)
    while another process opens the file."""
    deadline = time.monotonic() + WRITE_TIMEOUT
    pause = 0.001
    while True:
        try:
            conn.execute(sql)
            return
        except apsw.BusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def open_connection(path: str, *, durable: bool = False) -> apsw.Connection:
    """Open ``path`` in WAL mode with liteq's pragmas and its schema up to date.

    The file is checked before anything is written (the switch to WAL included):
    another application's database, one with ``liteq_*`` tables liteq did not make, or
    one from a newer liteq is refused untouched.
    """
    create_private_file(path)
    conn = None
    try:
        conn = apsw.Connection(path)
        conn.set_busy_handler(_busy_handler())
        check(conn, path)
        if conn.execute("PRAGMA page_count").get == 0:
            # A new file: its first page fixes the auto_vacuum mode (WAL writes it).
            _file_pragma(conn, AUTO_VACUUM)
        _file_pragma(conn, "PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        conn.execute("PRAGMA wal_autocheckpoint=10000")
        conn.execute("PRAGMA journal_size_limit=67108864")
        conn.execute("PRAGMA temp_store=MEMORY")
        migrate(conn, path)
    except BaseException as e:
        if conn is not None:
            conn.close()
        if isinstance(e, apsw.Error):
            raise database_error(e, path, "open") from e
        raise
    return conn


class Database:
    """The per-process, fork-aware write connection of one database file."""

    _instances: dict[tuple[str, int, bool], Database] = {}
    _instances_lock = threading.Lock()

    def __init__(self, path: str, *, durable: bool = False) -> None:
        self.path = path
        self.durable = durable
        self.lock = threading.RLock()
        self._conn: apsw.Connection | None = None
        self._pid = -1
        #: Enqueues committed through this process's connection, which ``PRAGMA
        #: data_version`` cannot show to consumers sharing the connection.
        self.local_enqueues = 0

    @classmethod
    def shared(cls, path: str, *, durable: bool = False) -> Database:
        """The process's ``Database`` for ``path`` (one write connection per file)."""
        key = (os.path.realpath(path), os.getpid(), durable)
        with cls._instances_lock:
            db = cls._instances.get(key)
            if db is None:
                db = cls._instances[key] = cls(path, durable=durable)
            return db

    @property
    def conn(self) -> apsw.Connection:
        """The connection, reopened in a forked child (a parent's connection is never reused)."""
        if self._pid != os.getpid():
            self._conn = open_connection(self.path, durable=self.durable)
            self._pid = os.getpid()
        return self._conn  # type: ignore[return-value]

    def open(self) -> None:
        """Open (check, migrate) the file now rather than at first use."""
        with self.lock:
            _ = self.conn

    def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in ``BEGIN IMMEDIATE``, retrying on lock contention.

        ``fn`` must be safe to run again: a busy database rolls it back and retries.
        """

        def transaction(conn: apsw.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args)
                conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        return self._retrying(transaction)

    def execute(self, sql: str, params: Any = ()) -> None:
        """Run one write statement as its own (implicit) transaction, retrying when busy."""
        self._retrying(lambda conn: conn.execute(sql, params))

    def _retrying(self, op: Callable[[apsw.Connection], T]) -> T:
        deadline = time.monotonic() + WRITE_TIMEOUT
        with self.lock:
            conn = self.conn
            while True:
                try:
                    return op(conn)
                except apsw.BusyError:
                    if time.monotonic() > deadline:
                        raise DatabaseUnavailable(
                            f"database {self.path!r} stayed locked for {WRITE_TIMEOUT:.0f}s"
                        ) from None
                except (apsw.FullError, apsw.ReadOnlyError, apsw.IOError, apsw.CantOpenError,
                        apsw.CorruptError, apsw.NotADBError, apsw.TooBigError) as e:
                    raise database_error(e, self.path) from e

    def read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query on the shared connection and return all rows."""
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def read_with(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one read transaction (a consistent snapshot)."""
        with self.lock:
            conn = self.conn
            conn.execute("BEGIN DEFERRED")
            try:
                return fn(conn, *args)
            finally:
                conn.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._pid = -1

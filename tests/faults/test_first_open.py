"""Processes that open a new database file at the same moment (a worker pool and a
producer started together) must all get a working broker.

They failed before the fix:

* ``check()`` read ``PRAGMA application_id`` and ``PRAGMA user_version`` in two
  separate statements; another process's migration committing in between showed the
  header half-written (application_id 0, user_version 1) and the file was refused as
  "belongs to another application". The header is now read in one read snapshot.
* ``PRAGMA journal_mode=WAL`` in ``open_connection`` could fail at once with a raw
  ``apsw.BusyError`` ("database is locked") while another process switched the same
  new file to WAL; it is now retried.
"""

from __future__ import annotations

import multiprocessing
import os
import threading

import apsw

from liteq import SqliteBroker
from liteq.brokers.sqlite import schema


def test_the_header_check_is_not_fooled_by_a_migration_committing_in_between(tmp_path):
    path = str(tmp_path / "new.db")
    open(path, "wb").close()
    conn = apsw.Connection(path)
    other: list[threading.Thread] = []

    def migrate_elsewhere() -> None:
        SqliteBroker(path, middleware=[]).close()

    def trace(cursor: apsw.Cursor, sql: str, bindings: object) -> bool:
        if "user_version" in sql and not other:
            other.append(threading.Thread(target=migrate_elsewhere))
            other[0].start()
            other[0].join(2)  # done unless the check holds a read snapshot (as it should)
        return True

    conn.exec_trace = trace
    try:
        assert schema.check(conn, path) in (0, schema.SCHEMA_VERSION)
    finally:
        conn.exec_trace = None
        conn.close()
        for thread in other:
            thread.join(10)


def _open(path: str, barrier: multiprocessing.synchronize.Barrier,
          errors: multiprocessing.Queue) -> None:
    barrier.wait()
    try:
        SqliteBroker(path, middleware=[]).close()
        errors.put(None)
    except Exception as e:  # reported to the test, which names it
        errors.put(f"{type(e).__name__}: {e}")


def test_processes_opening_a_new_file_at_once_all_get_a_broker(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for trial in range(100):
        path = str(tmp_path / f"new-{trial}.db")
        barrier, errors = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(path, barrier, errors)) for _ in range(3)]
        for p in procs:
            p.start()
        failures = [e for e in (errors.get(timeout=60) for _ in procs) if e is not None]
        for p in procs:
            p.join(10)
        assert not failures, f"trial {trial}: {failures}"
        os.unlink(path)

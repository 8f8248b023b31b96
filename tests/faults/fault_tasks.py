"""Task module of the fault tests, run by real ``liteq worker`` processes.

The broker comes from LITEQ_BROKER_URL; every run appends ``n pid`` to the file named
by LITEQ_TEST_RECORD; LITEQ_TEST_MAX_LENGTH lowers SQLite's maximum string/blob length
(``SQLITE_LIMIT_LENGTH``) in the worker process.
"""

import os

import apsw

import liteq
from liteq.store import SqliteBroker

broker = SqliteBroker(url=os.environ["LITEQ_BROKER_URL"])
liteq.set_broker(broker)
if os.environ.get("LITEQ_TEST_MAX_LENGTH"):
    broker.db.conn.limit(apsw.SQLITE_LIMIT_LENGTH, int(os.environ["LITEQ_TEST_MAX_LENGTH"]))

RECORD = os.environ.get("LITEQ_TEST_RECORD", os.devnull)


@liteq.actor(max_retries=0)
def record(n: int) -> None:
    """Append ``n pid`` to the record file (O_APPEND: one write per run)."""
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{n} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@liteq.actor(max_retries=0)
def fail_loudly(size: int) -> None:
    """Fail with an exception message of ``size`` characters (a long traceback)."""
    raise ValueError("x" * size)

"""Files written by previous releases (schemas 1 and 2) open, migrate and keep their data."""

from __future__ import annotations

import shutil
from pathlib import Path

import apsw
from helpers import running_worker, wait_for

import liteq
from liteq.brokers.sqlite import schema

V1 = Path(__file__).parents[1] / "fixtures" / "db" / "schema_v1.db"


def test_a_schema_1_file_is_migrated_and_its_messages_run(tmp_path):
    """The fixture holds add(1, 2) ready, add(3, 4) priority 5 leased by a worker that
    died long ago, add(5, 6) delayed; made by liteq 0.1.0 (schema 1)."""
    path = tmp_path / "q.db"
    shutil.copy(V1, path)
    before = apsw.Connection(str(path))
    assert before.execute("PRAGMA user_version").fetchone()[0] == 1
    before.close()

    broker = liteq.SqliteBroker(str(path), lease_ms=100)
    assert broker.db.read("PRAGMA user_version")[0][0] == schema.SCHEMA_VERSION >= 3
    columns = {row[1] for row in broker.db.read("PRAGMA table_info(liteq_messages)")}
    assert "suspect" in columns
    indexes = {row[0] for row in broker.db.read(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "liteq_messages_suspect" in indexes
    results = []

    @liteq.actor(broker=broker)
    def add(x, y):
        results.append(x + y)

    with running_worker(broker):
        wait_for(lambda: sorted(results) == [3, 7, 11], timeout=20)
        broker.join("default", timeout=10000)
    assert broker.stats()["default"]["succeeded"] == 3
    assert broker.list_dead_letters() == []
    broker.close()


def test_a_schema_2_file_keeps_its_counters_under_the_new_names(tmp_path):
    """Migration 3: ``done`` (attempts acked, retried ones too) becomes ``succeeded``,
    ``failed`` (dead letters only) is also ``dead_lettered``; the registry gains
    ``succeeded`` and ``running_queues``."""
    path = str(tmp_path / "q.db")
    conn = apsw.Connection(path)
    conn.execute("BEGIN")
    for version in (1, 2):
        conn.execute(schema.MIGRATIONS[version])
    conn.execute("INSERT INTO liteq_queues (queue, done, failed, created_at)"
                 " VALUES ('default', 7, 2, 0)")
    conn.execute("INSERT INTO liteq_workers (owner, pid, host, queues, threads, started_at,"
                 " heartbeat_at, processed, failed) VALUES ('h:1:a', 1, 'h', '[]', 2, 0, 0, 9, 2)")
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    conn.execute("COMMIT")
    conn.close()

    broker = liteq.SqliteBroker(path)
    try:
        counts = broker.inspector().queues()["default"]
        assert (counts.succeeded, counts.failed, counts.retried, counts.dead_lettered) == (
            7, 2, 0, 2)
        [entry] = broker.inspector().workers()
        assert (entry["processed"], entry["succeeded"], entry["failed"]) == (9, 0, 2)
        assert entry["running_queues"] == {}
    finally:
        broker.close()

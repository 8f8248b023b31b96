"""A file written by the previous release (schema 1) opens, migrates and keeps its messages."""

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
    assert broker.db.read("PRAGMA user_version")[0][0] == schema.SCHEMA_VERSION
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
    assert broker.stats()["default"]["done"] == 3
    assert broker.list_dead_letters() == []
    broker.close()

"""``liteq compact`` on real files, run as a real process beside a real worker pool."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import wait_for
from pools import enqueue, open_broker, queue_idle, record_count, records

import liteq
from liteq.brokers.sqlite.compact import full_vacuum, storage_facts
from liteq.brokers.sqlite.db import Database
from liteq.store import SqliteBroker

V1 = Path(__file__).parents[1] / "fixtures" / "db" / "schema_v1.db"


def run(db: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, LITEQ_BROKER_URL=f"sqlite:///{db}")
    return subprocess.run([sys.executable, "-m", "liteq", *args], env=env, cwd=db.parent,
                          capture_output=True, text=True, input=input, timeout=120)


def run_json(db: Path, *args: str) -> dict:
    proc = run(db, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def fill_and_purge(broker: SqliteBroker, count: int, queue: str = "bulk") -> dict:
    """Send ``count`` messages with enqueue_many and purge them; the file's facts after."""
    broker.declare_queue(queue)
    for start in range(0, count, 50_000):
        broker.enqueue_many([liteq.Message(queue, "ghost", (n,), {}, {})
                             for n in range(start, min(start + 50_000, count))])
    broker.flush(queue)
    broker.db.read("PRAGMA wal_checkpoint(PASSIVE)")
    return broker.db.read_with(storage_facts)


def auto_vacuum(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA auto_vacuum").fetchone()[0]
    finally:
        conn.close()


def test_compact_returns_the_space_of_200000_purged_messages_while_a_worker_drains(
        tmp_path, pools):
    db = tmp_path / "q.db"
    broker = open_broker(tmp_path)
    broker.declare_queue("bulk")
    for start in range(0, 200_000, 50_000):
        broker.enqueue_many([liteq.Message("bulk", "ghost", (n,), {}, {})
                             for n in range(start, start + 50_000)])
    # Sent after the bulk: their pages sit at the end of the file, so compacting has to
    # move them while the worker consumes them.
    live = 12_000
    broker.enqueue_many([liteq.Message("default", "record", (n,), {"sleep_ms": 1}, {})
                         for n in range(live)])
    broker.flush("bulk")
    broker.db.read("PRAGMA wal_checkpoint(PASSIVE)")
    before = broker.db.read_with(storage_facts)
    broker.close()
    assert before["auto_vacuum"] == "incremental"
    assert before["file_bytes"] > 40_000_000  # purged, and the file stays big
    assert before["free_pages"] > 0.75 * before["pages"]

    pool = pools("-p", "1", "-t", "4", "-Q", "default")
    wait_for(lambda: record_count(tmp_path) > 200, timeout=30)
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.monotonic(), record_count(tmp_path)))
            done.wait(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        started = time.monotonic()
        result = run_json(db, "compact")
        ended = time.monotonic()
    finally:
        done.set()
        sampler.join()

    assert result["pages_freed"] >= 0.9 * before["free_pages"]
    assert result["bytes_freed"] == result["pages_freed"] * before["page_size"]
    assert result["file_bytes_before"] >= before["file_bytes"]
    assert result["file_bytes_after"] < 0.25 * before["file_bytes"]
    assert os.path.getsize(db) < 0.25 * before["file_bytes"]
    assert result["steps"] > 1 and result["longest_hold_ms"] < 200, result
    # The worker kept going while the compaction ran: no stall between its tasks.
    during = [(t, n) for t, n in samples if started <= t <= ended]
    assert during[-1][1] > during[0][1], during
    changes = [t for (t, n), (_, previous) in zip(during[1:], during[:-1], strict=True)
               if n != previous]
    edges = [started, *changes, ended]
    gaps = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    assert max(gaps) < 2.0, (max(gaps), result)
    print(f"\ncompact: {result['file_bytes_before']} -> {result['file_bytes_after']} bytes, "
          f"{result['pages_freed']} pages in {result['steps']} steps, longest write lock "
          f"{result['longest_hold_ms']} ms, {result['seconds']} s; longest pause of the "
          f"worker meanwhile {max(gaps) * 1000:.0f} ms")

    # Every message the compaction moved ran, once.
    wait_for(lambda: record_count(tmp_path) >= live, timeout=60)
    assert sorted(int(n) for n, _ in records(tmp_path)) == list(range(live))
    pool.kill()


def test_full_converts_an_old_file_once_then_compact_works(tmp_path):
    db = tmp_path / "q.db"
    shutil.copy(V1, db)
    broker = SqliteBroker(str(db), middleware=[])  # migrated; its auto_vacuum stays NONE
    before = fill_and_purge(broker, 20_000)
    kept = broker.stats()["default"]
    broker.close()
    assert before["auto_vacuum"] == "none" and before["free_pages"] > 1000

    proc = run(db, "compact")
    assert proc.returncode == 1
    assert "auto_vacuum=NONE" in proc.stderr and "liteq compact --full" in proc.stderr
    proc = run(db, "compact", "--full", input="n\n")
    assert proc.returncode == 1 and "workers and producers of this file block" in proc.stderr
    assert auto_vacuum(db) == 0

    result = run_json(db, "compact", "--full", "--yes")
    assert result["full"] and result["auto_vacuum"] == "incremental"
    assert result["pages_freed"] >= 0.9 * before["free_pages"]
    assert result["file_bytes_after"] < 0.5 * before["file_bytes"]
    assert auto_vacuum(db) == 2

    broker = SqliteBroker(str(db), middleware=[])
    assert broker.stats()["default"] == kept  # the fixture's messages are still there
    again = fill_and_purge(broker, 20_000)
    broker.close()
    result = run_json(db, "compact")
    assert not result["full"] and result["pages_freed"] >= 0.9 * again["free_pages"]
    assert result["free_pages_left"] < 0.1 * again["free_pages"]
    proc = run(db, "compact")
    assert proc.returncode == 0 and "no free pages to return" in proc.stdout


def test_full_does_not_let_a_running_task_s_lease_lapse_while_it_blocks_the_worker(
        tmp_path, pools):
    """VACUUM blocks the worker's lease renewals: without extending the leases first,
    a task running longer than the lease would be reaped and run a second time."""
    db = tmp_path / "q.db"
    open_broker(tmp_path).close()
    pool = pools("-p", "1", "-t", "1", "-Q", "default",
                 extra_env={"LITEQ_TEST_LEASE_MS": "1000"})
    enqueue(tmp_path, "record", [(1,)], sleep_ms=3000)
    reader = sqlite3.connect(db)

    def lease_expiry() -> int | None:
        row = reader.execute("SELECT lease_expires_at FROM liteq_messages WHERE state = 2"
                             ).fetchone()
        return row[0] if row else None

    wait_for(lambda: lease_expiry() is not None, timeout=30)
    # The VACUUM holds the write lock until the test lets it go (a seam at its progress
    # handler, once it has the lock): longer than the lease, as a big file's would.
    in_vacuum, holding, release = threading.Event(), threading.Event(), threading.Event()
    vacuum = Database(str(db))

    def trace(cursor: object, sql: str, bindings: object) -> bool:
        if sql.strip().upper() == "VACUUM":
            in_vacuum.set()
        return True

    def progress() -> bool:
        if in_vacuum.is_set() and vacuum.conn.txn_state("main") == 2:  # SQLITE_TXN_WRITE
            holding.set()
            release.wait(20)
        return False

    vacuum.conn.exec_trace = trace
    vacuum.conn.set_progress_handler(progress, 1)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(full_vacuum(vacuum)))
    thread.start()
    try:
        assert holding.wait(20)
        # The worker renewed its 1 s lease at the latest when the VACUUM began: wait until
        # that lease is 0.5 s past; the row's lease must still hold, long ahead.
        lapsed_at = time.time() * 1000 + 1000 + 500
        wait_for(lambda: time.time() * 1000 > lapsed_at, timeout=10)
        expiry = lease_expiry()
        assert expiry is not None and expiry > time.time() * 1000 + 10_000
    finally:
        release.set()
        thread.join(30)
        reader.close()
    assert result and result[0].longest_hold_ms > 1500
    vacuum.close()
    wait_for(lambda: record_count(tmp_path) >= 1 and queue_idle(tmp_path), timeout=30)
    assert [n for n, _ in records(tmp_path)] == ["1"]  # it ran once
    pool.kill()


def test_new_files_are_incremental_and_an_application_file_is_rewritten_only_with_full(
        tmp_path):
    broker = SqliteBroker(str(tmp_path / "new.db"), middleware=[])
    broker.close()
    assert auto_vacuum(tmp_path / "new.db") == 2

    app = tmp_path / "app.db"
    conn = sqlite3.connect(app)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
    conn.executemany("INSERT INTO orders (item) VALUES (?)", [("x" * 100,)] * 1000)
    conn.commit()
    conn.close()
    broker = SqliteBroker(str(app), middleware=[])  # adopted: liteq adds its tables
    fill_and_purge(broker, 5_000)
    broker.close()
    assert auto_vacuum(app) == 0
    size = os.path.getsize(app)

    proc = run(app, "compact")
    assert proc.returncode == 1 and "liteq compact --full" in proc.stderr
    proc = run(app, "compact", "--full", input="n\n")
    assert proc.returncode == 1
    assert "including 1 table(s) of your application" in proc.stderr
    assert os.path.getsize(app) == size and auto_vacuum(app) == 0
    conn = sqlite3.connect(app)
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 1000
    conn.close()


def test_compact_is_listed_and_has_nothing_to_do_on_other_brokers(tmp_path):
    db = tmp_path / "q.db"
    assert "compact" in run(db, "--help").stdout
    assert "--full" in run(db, "compact", "--help").stdout
    proc = run(db, "compact", "--broker", "redis://:secret@127.0.0.1:1/0")
    assert proc.returncode == 0 and "nothing to do" in proc.stdout
    assert "secret" not in proc.stdout
    data = run_json(db, "compact", "--broker", "amqp://127.0.0.1:1")
    assert data["compacted"] is False and "manages its own storage" in data["reason"]
    proc = run(db, "compact")
    assert proc.returncode == 3 and "no liteq database" in proc.stderr

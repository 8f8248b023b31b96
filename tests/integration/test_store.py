"""The SQLite broker on real files: ordering, the claim plan, leases, transactions, bad input."""

from __future__ import annotations

import hashlib
import os
import queue
import random
import sqlite3
import stat
import statistics
import threading
import time

import apsw
import pytest
from helpers import running_worker, wait_for

import liteq
from liteq.brokers.sqlite import schema
from liteq.common import current_millis
from liteq.errors import (
    DatabaseUnavailable,
    EncodeError,
    InvalidOption,
    InvalidQueueName,
    NotALiteqDatabase,
    SchemaTooNew,
)


def count_rows(broker: liteq.SqliteBroker, table: str = "liteq_messages") -> int:
    """Rows of ``table``; for messages, not counting the tombstone that sqlite/counts.py keeps."""
    where = f" WHERE state != {schema.TOMBSTONE}" if table == "liteq_messages" else ""
    return broker.db.read(f"SELECT count(*) FROM {table}{where}")[0][0]


def drain(consumer, batch: int = 50) -> list:
    """Claim everything claimable now, acking as we go; return the proxies in claim order."""
    claimed, pending = [], []
    while True:
        got = consumer.exchange(pending, batch)
        consumer._dirty = True
        if not got:
            return claimed
        claimed += got
        pending = got


def test_claim_order_is_priority_then_eta_then_fifo(sqlite_broker):
    @liteq.actor
    def job(n):
        pass

    rng = random.Random(7)
    now = current_millis()
    expected = []
    for n in range(1000):
        priority = rng.randint(-2, 3)
        eta = now + rng.choice([0, 0, 0, 50, 150, 300])
        sqlite_broker.enqueue(job.message_with_options(args=(n,), priority=priority, eta=eta))
        expected.append((-priority, eta, n))
    wait_for(lambda: current_millis() > now + 350, timeout=5)
    consumer = sqlite_broker.consume("default", prefetch=50)
    order = [p.args[0] for p in drain(consumer)]
    assert order == [n for _, _, n in sorted(expected)]


def test_delayed_message_never_runs_before_its_eta(sqlite_broker):
    ran = {}

    @liteq.actor
    def stamp(n):
        ran[n] = current_millis()

    sent = [stamp.send_with_options(args=(n,), delay=30 * n) for n in range(10)]
    with running_worker(sqlite_broker, worker_threads=2):
        sqlite_broker.join("default", timeout=10000)
    assert sorted(ran) == list(range(10))
    for message in sent:
        assert ran[message.args[0]] >= message.options.get("eta", 0)


def test_claim_uses_the_ready_index_without_sorting(sqlite_broker):
    @liteq.actor
    def job(n):
        pass

    sqlite_broker.enqueue_many(
        [job.message_with_options(args=(n,), priority=n % 7) for n in range(100_000)],
        delay=3_600_000,
    )
    sqlite_broker.enqueue_many([job.message(n) for n in range(100)])
    conn = sqlite_broker.db.conn
    plan = " | ".join(row[3] for row in conn.execute(
        "EXPLAIN QUERY PLAN " + schema.CLAIM, ("default", 32)))
    assert "liteq_messages_ready" in plan
    assert "TEMP B-TREE" not in plan.upper()
    promote = " | ".join(row[3] for row in conn.execute(
        "EXPLAIN QUERY PLAN " + schema.PROMOTE_DUE, (current_millis(),)))
    assert "liteq_messages_delayed" in promote
    consumer = sqlite_broker.consume("default", prefetch=32)
    assert len(consumer.exchange([], 32)) == 32


def test_stale_lease_token_changes_nothing(db_path):
    broker = liteq.SqliteBroker(db_path, lease_ms=100)

    @liteq.actor(broker=broker)
    def job():
        pass

    job.send()
    first = broker.consume("default")
    [old] = first.exchange([], 1)
    wait_for(lambda: current_millis() > broker.db.read(
        "SELECT lease_expires_at FROM liteq_messages")[0][0], timeout=5)
    second = broker.consume("default")
    second._reap_at = 0
    [new] = second.exchange([], 1)
    assert new.message_id == old.message_id
    first.exchange([old], 0)
    assert broker.db.read("SELECT deliveries, state FROM liteq_messages WHERE state != 3") == [
        (1, schema.LEASED)]
    second.exchange([new], 0)
    assert count_rows(broker) == 0
    assert broker.stats()["default"]["succeeded"] == 1


def lease_expiries(broker: liteq.SqliteBroker) -> list[int]:
    """The lease expiry of every leased row, read from the file."""
    return [row[0] for row in broker.db.read(
        f"SELECT lease_expires_at FROM liteq_messages WHERE state = {schema.LEASED}")]


def poll_until(consumer, count: int, timeout: float = 10) -> list:
    """Claim one message at a time until ``count`` are held (fail after ``timeout`` s)."""
    held: list = []

    def claimed() -> bool:
        proxy = consumer.poll()
        if proxy is not None:
            held.append(proxy)
        return len(held) >= count

    wait_for(claimed, timeout=timeout)
    return held


def test_stale_ack_of_rows_another_consumer_re_leased_changes_nothing(db_path):
    """A's ack after its lease lapsed and B claimed the rows again must not delete them,
    whichever row is the counts watermark (several rows: most are not)."""
    broker = liteq.SqliteBroker(db_path, lease_ms=100)

    @liteq.actor(broker=broker)
    def job(n):
        pass

    for n in range(4):
        job.send(n)
    first = broker.consume("default")
    old = poll_until(first, 4)
    wait_for(lambda: current_millis() > max(lease_expiries(broker)), timeout=5)
    # Lapsed rows come back as suspects, which a consumer claims one at a time (alone).
    others = [broker.consume("default") for _ in range(4)]
    new = [poll_until(other, 1)[0] for other in others]
    assert sorted(p.args[0] for p in new) == [0, 1, 2, 3]
    for proxy in old:
        first.ack(proxy)
    live = f"SELECT count(*) FROM liteq_messages WHERE state = {schema.LEASED}"
    assert broker.db.read(live)[0][0] == 4
    assert broker.stats()["default"]["succeeded"] == 0
    for other, proxy in zip(others, new, strict=True):
        other.ack(proxy)
        other.close()
    assert count_rows(broker) == 0
    assert broker.stats()["default"]["succeeded"] == 4
    first.close()


def test_a_reap_never_takes_a_lease_that_is_still_valid(db_path):
    """Consumers reaping over and over while another holds a renewed, valid lease claim
    nothing; the holder's ack then settles the message."""
    broker = liteq.SqliteBroker(db_path, lease_ms=1000)

    @liteq.actor(broker=broker)
    def job():
        pass

    job.send()
    holder = broker.consume("default")
    [held] = poll_until(holder, 1)
    reaper = broker.consume("default")
    fresh_reapers = 0
    deadline = current_millis() + 1500  # several reap intervals (lease_ms / 3) of ``reaper``
    while current_millis() < deadline:
        holder.exchange([], 0)  # keeps the lease renewed
        assert reaper.poll() is None
        if fresh_reapers < 20:
            other = broker.consume("default")
            assert other.poll() is None
            other.close()
            fresh_reapers += 1
        assert len(lease_expiries(broker)) == 1
    holder.ack(held)
    assert count_rows(broker) == 0
    assert broker.stats()["default"]["succeeded"] == 1
    holder.close()
    reaper.close()


def test_enqueue_many_is_never_seen_in_part_by_another_connection(sqlite_broker, db_path):
    """After every commit of the broker's connection, a reader on its own connection
    counts the rows: only none or the whole batch may ever be visible."""
    @liteq.actor
    def job(n):
        pass

    batch = 200
    reader = apsw.Connection(db_path)
    visible: list[int] = []

    def after_commit(conn, name, pages):
        visible.append(reader.execute(
            f"SELECT count(*) FROM liteq_messages WHERE state != {schema.TOMBSTONE}"
        ).fetchone()[0])
        return apsw.SQLITE_OK

    writer = sqlite_broker.db.conn
    writer.set_wal_hook(after_commit)
    try:
        sqlite_broker.enqueue_many([job.message(n) for n in range(batch)])
    finally:
        writer.set_wal_hook(None)
    assert batch in visible
    assert set(visible) <= {0, batch}, sorted(set(visible))
    reader.close()


def test_enqueue_inside_callers_transaction_commits_or_rolls_back(sqlite_broker, db_path):
    ran = []

    @liteq.actor
    def ship(order):
        ran.append(order)

    app = apsw.Connection(db_path)
    app.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    with pytest.raises(RuntimeError, match="roll back"), app:
        app.execute("INSERT INTO orders VALUES (1)")
        with sqlite_broker.transaction(app):
            ship.send(1)
        raise RuntimeError("roll back")
    with app:
        app.execute("INSERT INTO orders VALUES (2)")
        with sqlite_broker.transaction(app):
            ship.send(2)

    std = sqlite3.connect(db_path)
    std.execute("INSERT INTO orders VALUES (3)")
    sqlite_broker.enqueue(ship.message(3), connection=std)
    std.rollback()
    std.execute("INSERT INTO orders VALUES (4)")
    sqlite_broker.enqueue(ship.message(4), connection=std)
    std.commit()

    with running_worker(sqlite_broker, worker_threads=2):
        sqlite_broker.join("default", timeout=10000)
    assert sorted(ran) == [2, 4]
    assert [r[0] for r in app.execute("SELECT id FROM orders ORDER BY id")] == [2, 4]


def test_worker_stop_returns_prefetched_messages(sqlite_broker):
    release = threading.Event()
    started = []

    @liteq.actor
    def slow(n):
        started.append(n)
        release.wait(10)

    for n in range(20):
        slow.send(n)
    worker = liteq.Worker(sqlite_broker, worker_threads=1, prefetch=8, worker_timeout=100)
    worker.start()
    wait_for(lambda: started, timeout=5)
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout": 10000})
    stopper.start()
    wait_for(lambda: sqlite_broker.stats()["default"]["ready"] == 19, timeout=5)
    release.set()
    stopper.join(15)
    assert len(started) == 1
    rows = sqlite_broker.db.read("SELECT state, deliveries FROM liteq_messages WHERE state != 3")
    assert len(rows) == 19
    assert set(rows) == {(schema.READY, 0)}


def test_failed_message_is_dead_lettered_with_reason_and_can_be_requeued(sqlite_broker):
    attempts = []

    @liteq.actor(max_retries=0)
    def boom(n):
        attempts.append(n)
        if len(attempts) == 1:
            raise ValueError(f"bad {n}")

    boom.send(1)
    with running_worker(sqlite_broker, worker_threads=1):
        with pytest.raises(ValueError, match="bad 1"):
            sqlite_broker.join("default", timeout=10000, fail_fast=True)
        [letter] = sqlite_broker.list_dead_letters()
        assert letter.reason == "ValueError: bad 1"
        assert "ValueError" in letter.traceback
        assert letter.message.args == (1,)
        assert sqlite_broker.stats()["default"]["dead"] == 1
        assert sqlite_broker.requeue_dead_letters(queue="default") == 1
        sqlite_broker.join("default", timeout=10000)
    assert attempts == [1, 1]
    assert sqlite_broker.list_dead_letters() == []


def test_dead_letters_can_be_purged_with_progress(sqlite_broker):
    @liteq.actor(max_retries=0)
    def boom():
        raise RuntimeError("no")

    for _ in range(3):
        boom.send()
    with running_worker(sqlite_broker, worker_threads=2):
        sqlite_broker.join("default", timeout=10000, fail_fast=False)
    seen = []
    assert sqlite_broker.purge_dead_letters(progress=seen.append) == 3
    assert seen == [3]
    assert count_rows(sqlite_broker, "liteq_dead_letters") == 0


def test_idle_worker_wakes_for_a_message_from_another_connection(sqlite_broker, db_path):
    done = threading.Event()

    @liteq.actor
    def ping():
        done.set()

    with running_worker(sqlite_broker, worker_threads=1) as worker:
        assert worker.consumer.waiter.uses_inotify
        wait_for(lambda: sqlite_broker.workers(), timeout=5)
        conn = apsw.Connection(db_path)
        conn.set_busy_timeout(5000)
        sqlite_broker.enqueue(ping.message(), connection=conn)
        assert done.wait(5)


def test_polling_fallback_also_wakes(monkeypatch, sqlite_broker, db_path):
    monkeypatch.setenv("LITEQ_WAKEUP", "poll")
    done = threading.Event()

    @liteq.actor
    def ping():
        done.set()

    with running_worker(sqlite_broker, worker_threads=1) as worker:
        assert not worker.consumer.waiter.uses_inotify
        conn = apsw.Connection(db_path)
        conn.set_busy_timeout(5000)
        sqlite_broker.enqueue(ping.message(), connection=conn)
        assert done.wait(5)


def test_polling_fallback_picks_up_within_milliseconds(monkeypatch, sqlite_broker, db_path):
    """An idle polling consumer notices another connection's send within a few ms.

    The worker timeout is long, so only the poll interval bounds the pickup; a send is
    made as soon as the consumer is back waiting, so a slow poll shows in every sample.
    """
    monkeypatch.setenv("LITEQ_WAKEUP", "poll")
    picked_up: queue.SimpleQueue[float] = queue.SimpleQueue()

    @liteq.actor
    def ping(sent_at: float) -> None:
        picked_up.put(time.monotonic() - sent_at)

    conn = apsw.Connection(db_path)
    conn.set_busy_timeout(5000)
    worker = liteq.Worker(sqlite_broker, worker_timeout=10_000, worker_threads=1)
    worker.start()
    try:
        assert not worker.consumer.waiter.uses_inotify
        consumer_thread = worker.consumer_thread
        latencies = []
        for _ in range(15):
            # Acked, then idle: the consumer has gone back to waiting on the database.
            wait_for(lambda: count_rows(sqlite_broker) == 0 and consumer_thread.idle)
            sqlite_broker.enqueue(ping.message(time.monotonic()), connection=conn)
            latencies.append(picked_up.get(timeout=10))
    finally:
        worker.stop(timeout=5000)
        conn.close()
    # The poll interval is 2 ms; 100 ms leaves room for a loaded machine, not for a
    # poll ten times slower.
    assert statistics.median(latencies) < 0.1, sorted(latencies)


def test_files_are_private_and_durable_uses_full_sync(tmp_path):
    path = str(tmp_path / "secure.db")
    broker = liteq.SqliteBroker(path, durable=True)

    @liteq.actor(broker=broker)
    def job():
        pass

    job.send()
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(path + suffix).st_mode) == 0o600
    assert broker.db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert liteq.SqliteBroker(str(tmp_path / "fast.db")).db.conn.execute(
        "PRAGMA synchronous").fetchone()[0] == 1


def test_registry_lists_running_workers(sqlite_broker):
    @liteq.actor
    def job():
        pass

    with running_worker(sqlite_broker, worker_threads=3):
        wait_for(lambda: sqlite_broker.workers(), timeout=5)
        [entry] = sqlite_broker.workers()
        assert entry["pid"] == os.getpid()
        assert entry["threads"] == 3
        assert entry["queues"] == ["default"]
    assert sqlite_broker.workers() == []


# --- bad input ---------------------------------------------------------------------------

def test_bad_send_arguments_are_refused_before_anything_is_written(sqlite_broker):
    @liteq.actor
    def job(x):
        pass

    with pytest.raises(EncodeError, match="JSON"):
        job.send(object())
    with pytest.raises(InvalidOption, match="negative"):
        job.send_with_options(args=(1,), delay=-5)
    with pytest.raises(InvalidOption, match="priority"):
        job.send_with_options(args=(1,), priority="high")
    with pytest.raises(InvalidOption, match="priority"):
        job.send_with_options(args=(1,), priority=1.5)
    with pytest.raises(InvalidOption, match="unknown actor option"):
        liteq.actor(lambda: None, actor_name="x", colour="red")
    with pytest.raises(InvalidQueueName, match="queue name"):
        liteq.actor(lambda: None, actor_name="y", queue_name="no spaces")
    assert count_rows(sqlite_broker) == 0


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_another_applications_database_is_refused_and_left_alone(tmp_path):
    path = str(tmp_path / "other.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    before = file_digest(path)
    with pytest.raises(NotALiteqDatabase, match="another application"):
        liteq.SqliteBroker(path)
    assert file_digest(path) == before


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database" * 100)
    before = file_digest(str(path))
    with pytest.raises((NotALiteqDatabase, DatabaseUnavailable), match="not a SQLite database"):
        liteq.SqliteBroker(str(path))
    assert file_digest(str(path)) == before


def test_a_newer_schema_is_refused(db_path):
    liteq.SqliteBroker(db_path).close()
    conn = apsw.Connection(db_path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match="upgrade liteq"):
        liteq.SqliteBroker(db_path)


def test_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        liteq.SqliteBroker(str(tmp_path / "nope" / "liteq.db"))


def test_url_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert liteq.SqliteBroker(url="sqlite:///rel.db").path == str(tmp_path / "rel.db")
    absolute = str(tmp_path / "abs.db")
    assert liteq.SqliteBroker(url="sqlite:///" + absolute).path == absolute
    with pytest.raises(ValueError, match="sqlite URL"):
        liteq.SqliteBroker(url="sqlite://host/x.db")


def test_unknown_actor_and_undecodable_bodies_are_dead_lettered_with_the_reason(sqlite_broker):
    @liteq.actor
    def known():
        pass

    sqlite_broker.enqueue(liteq.Message(queue_name="default", actor_name="ghost", args=(),
                                        kwargs={}, options={}))
    sqlite_broker.db.execute(schema.INSERT_MESSAGE, (
        "default", schema.READY, 0, 0, "x", b"\xff not json", 0))
    with running_worker(sqlite_broker, worker_threads=1):
        sqlite_broker.join("default", timeout=10000, fail_fast=False)
    reasons = sorted(d.reason for d in sqlite_broker.list_dead_letters())
    assert len(reasons) == 2
    assert reasons[0].startswith("ActorNotFound: actor 'ghost'")
    assert reasons[1].startswith("undecodable:")


def test_pickle_is_signed_and_a_forged_body_is_never_unpickled(sqlite_broker):
    ran = []

    @liteq.actor
    def job(x):
        ran.append(x)

    liteq.set_encoder(liteq.PickleEncoder(key="app secret"))
    try:
        job.send({1, 2})
        forged = liteq.PickleEncoder(key="attacker").encode(job.message(3).asdict())
        sqlite_broker.db.execute(schema.INSERT_MESSAGE, (
            "default", schema.READY, 0, 0, "y", forged, 0))
        with running_worker(sqlite_broker, worker_threads=1):
            sqlite_broker.join("default", timeout=10000, fail_fast=False)
    finally:
        liteq.set_encoder(liteq.JSONEncoder())
    assert ran == [{1, 2}]
    [letter] = sqlite_broker.list_dead_letters()
    assert "bad signature" in letter.reason


def test_a_full_disk_is_a_clear_error_and_loses_nothing(sqlite_broker):
    @liteq.actor
    def job(payload):
        pass

    job.send("kept")
    pages = sqlite_broker.db.conn.execute("PRAGMA page_count").fetchone()[0]
    sqlite_broker.db.conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(DatabaseUnavailable, match="full"):
        for _ in range(1000):
            job.send("x" * 10000)
    sqlite_broker.db.conn.execute("PRAGMA max_page_count = 1073741823")
    consumer = sqlite_broker.consume("default", prefetch=2000)
    assert consumer.exchange([], 2000)[0].args == ("kept",)
    assert sqlite_broker.db.read("PRAGMA integrity_check") == [("ok",)]


def test_registry_publishes_recent_run_times_and_failures(sqlite_broker):
    @liteq.actor(max_retries=0)
    def maybe(fail):
        if fail:
            raise KeyError("nope")

    for fail in (False, False, True):
        maybe.send(fail)
    with running_worker(sqlite_broker, worker_threads=1):
        sqlite_broker.join("default", timeout=10000, fail_fast=False)
        wait_for(lambda: sqlite_broker.workers()
                 and sqlite_broker.workers()[0]["processed"] == 3, timeout=5)
        [entry] = sqlite_broker.workers()
    activity = entry["activity"]
    assert activity["run_time"]["default"]["n"] == 2
    assert activity["run_time"]["default"]["p95"] >= activity["run_time"]["default"]["p50"]
    [failure] = activity["failures"]
    assert failure["actor"] == "maybe" and failure["error"] == "KeyError: 'nope'"


def test_oldest_ready_is_found_by_index_seeks(sqlite_broker):
    @liteq.actor
    def job(n):
        pass

    assert sqlite_broker.oldest_ready("default") is None
    now = current_millis()
    for n, (priority, age) in enumerate([(5, 10), (0, 500), (9, 50), (0, 20)]):
        sqlite_broker.enqueue(job.message_with_options(args=(n,), priority=priority,
                                                       eta=now - age))
    assert sqlite_broker.oldest_ready("default") == now - 500
    plan = " ".join(r[3] for r in sqlite_broker.db.conn.execute(
        "EXPLAIN QUERY PLAN " + schema.OLDEST_READY, ("default",)))
    assert "SCAN liteq_messages" not in plan

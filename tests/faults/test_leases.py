"""Leases under attack: a stopped worker resumed after its lease lapsed, a write lock held
by the application past the lease. No message starts while another lease on it is valid.
"""

from __future__ import annotations

import collections
import json
import signal
import threading
import time
from pathlib import Path

import apsw
import pytest
from helpers import wait_for
from pools import enqueue, queue_idle, records

import liteq
from liteq.common import current_millis
from liteq.store import SqliteBroker


def lease_events(directory: Path, pid: int) -> list[dict]:
    """The lease log (``LITEQ_LEASE_LOG``) of process ``pid``."""
    path = directory / f"leases-{pid}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def lease_expiries(path: str) -> list[int]:
    broker = SqliteBroker(path, middleware=[])
    try:
        return [e for (e,) in broker.db.read(
            "SELECT lease_expires_at FROM liteq_messages WHERE state = 2")]
    finally:
        broker.close()


@pytest.mark.slow
def test_a_resumed_worker_does_not_start_messages_another_worker_leased(tmp_path, pools):
    """SIGSTOP a child past its lease, let another pool take the lapsed messages, SIGCONT:
    the first child finishes only what it was running; its prefetched copies never start."""
    path = str(tmp_path / "q.db")
    total, threads = 32, 2
    enqueue(tmp_path, "record", [(n,) for n in range(total)], sleep_ms=100)
    (tmp_path / "leases").mkdir()
    lease = {"LITEQ_TEST_LEASE_MS": "1000", "LITEQ_LEASE_LOG": str(tmp_path / "leases")}
    first = pools("-p", "1", "-t", str(threads), "--prefetch", str(total), extra_env=lease)
    [child] = first.wait_ready(1)
    wait_for(lambda: len(records(tmp_path)) >= 1, timeout=30)
    first.ps.children()[0].suspend()
    stopped_at = current_millis()
    stopped_with = len(records(tmp_path))
    assert stopped_with < total - threads
    wait_for(lambda: current_millis() > max(lease_expiries(path) or [0]), timeout=10)
    second = pools("-p", "1", "-t", str(threads), extra_env=lease)
    [other] = second.wait_ready(1)
    wait_for(lambda: sum(pid == other for _, pid in records(tmp_path)) >= 3, timeout=30)
    resumed_at = current_millis()
    first.ps.children()[0].resume()
    wait_for(lambda: {n for n, _ in records(tmp_path)} == {str(n) for n in range(total)},
             timeout=60)
    wait_for(lambda: queue_idle(tmp_path), timeout=30)
    events = lease_events(tmp_path / "leases", child)
    old_tokens = {e["tok"] for e in events if e["ev"] == "lease" and e["at"] <= stopped_at}
    late_starts = [e for e in events if e["ev"] == "start" and e["at"] >= resumed_at]
    # What it starts after the resume it claimed anew; no prefetched copy starts.
    assert not [e for e in late_starts if e["tok"] in old_tokens], late_starts
    runs = records(tmp_path)
    twice = [n for n, count in collections.Counter(n for n, _ in runs).items() if count > 1]
    # Run twice: only what it had run (not acked) or was running when it was stopped.
    in_flight = [n for n, pid in runs[stopped_with:] if pid == child][:threads]
    assert set(twice) <= {n for n, pid in runs[:stopped_with] if pid == child} | set(in_flight)
    assert "its lease lapsed before it could start" in first.output()
    for pool in (first, second):
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0


def test_a_renewal_after_waiting_for_the_lock_writes_a_full_lease(tmp_path):
    """The application holds the write lock for 1 s (lease 300 ms); the renewal that then
    commits writes an expiry of its own commit time + lease, not of a clock read before."""
    path = str(tmp_path / "q.db")
    broker = liteq.SqliteBroker(path, lease_ms=300)
    broker.declare_queue("default")
    broker.enqueue_many([liteq.Message("default", "job", (n,), {}, {}) for n in range(4)])
    consumer = broker.consume("default", prefetch=4)
    held = consumer.exchange([], 4)
    assert len(held) == 4
    wait_for(lambda: time.monotonic() >= consumer._maintenance_at(), timeout=5)
    app = apsw.Connection(path)
    app.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.0, lambda: app.execute("COMMIT"))
    release.start()
    try:
        assert consumer.exchange([], 0) == []
        returned_at = current_millis()
    finally:
        release.join()
        app.close()
    expiries = lease_expiries(path)
    assert len(expiries) == 4
    assert min(expiries) >= returned_at + 300 - 50, (expiries, returned_at)
    assert all(p.lease_until >= returned_at for p in held)
    broker.close()


def test_a_holder_whose_lease_was_taken_never_trusts_it_again(tmp_path):
    """A's lease lapses while it cannot write; another consumer reaps and claims the
    message; A's next renewal finds it gone, so A's copy is marked untrusted (a worker
    thread would hand it back) and A's hand-back changes nothing."""
    path = str(tmp_path / "q.db")
    broker = liteq.SqliteBroker(path, lease_ms=100)
    broker.declare_queue("default")
    broker.enqueue(liteq.Message("default", "job", (), {}, {}))
    a = broker.consume("default", prefetch=1)
    [old] = a.exchange([], 1)
    wait_for(lambda: current_millis() > max(lease_expiries(path)), timeout=5)
    b = broker.consume("default", prefetch=1)
    [new] = b.exchange([], 1)
    assert new.message_id == old.message_id
    wait_for(lambda: time.monotonic() >= a._maintenance_at(), timeout=5)
    a.exchange([], 0)
    assert old.lease_until < current_millis()
    assert new.lease_until > current_millis()
    a.requeue([old])
    assert broker.stats()["default"]["claimed"] == 1
    b.exchange([new], 0)
    assert broker.stats()["default"]["succeeded"] == 1
    broker.close()

"""The operations commands with ``--broker redis://…``: stats, queues, dlq list/show/
requeue/purge and purge, on what a real worker left on a real Redis server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from helpers import running_worker, wait_for

import liteq
from liteq.brokers.redis import RedisBroker

redis = pytest.importorskip("redis")
#: The database of the session's Redis server these tests use (emptied before and
#: after): a URL cannot name a namespace, so the commands read Dramatiq's default one.
DB = 6


@pytest.fixture
def url(redis_url: str) -> Iterator[str]:
    made = redis_url.rsplit("/", 1)[0] + f"/{DB}"
    client = redis.Redis.from_url(made)
    client.flushdb()
    yield made
    client.flushdb()
    client.close()


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LITEQ_BROKER_URL=url, COLUMNS="200", TERM="dumb")
    return subprocess.run([sys.executable, "-m", "liteq", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_dead_letters_show_their_reason_and_traceback_and_can_be_requeued(url):
    broker = RedisBroker(url=url)
    ran: list[int] = []

    @liteq.actor(broker=broker, queue_name="jobs", max_retries=1, min_backoff=10,
                 max_backoff=20)
    def explode(n: int) -> None:
        ran.append(n)
        raise KeyError(f"no such row {n}")

    try:
        explode.send(7)
        broker.enqueue_many([liteq.Message("jobs", "later", (), {}, {})] * 2, delay=3_600_000)
        with running_worker(broker, worker_threads=1):
            wait_for(lambda: broker.inspector().queues()["jobs"].dead == 1, timeout=30)
        assert ran == [7, 7]

        listed = cli(url, "dlq", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [row] = json.loads(listed.stdout)
        assert row["queue"] == "jobs" and row["actor_name"] == "explode"
        assert row["reason"] == "KeyError: 'no such row 7'"
        assert row["retries"] == 2 and row["deliveries"] is None

        shown = cli(url, "dlq", "show", row["id"])
        assert shown.returncode == 0, shown.stderr
        assert "reason:      KeyError: 'no such row 7'" in shown.stdout
        assert "traceback:\nTraceback (most recent call last):" in shown.stdout
        assert 'raise KeyError(f"no such row {n}")' in shown.stdout
        assert "deliveries:  –" in shown.stdout or "deliveries:  -" in shown.stdout

        stats = cli(url, "stats", "--json")
        assert stats.returncode == 0, stats.stderr
        data = json.loads(stats.stdout)
        assert data["broker"] == url
        assert data["queues"]["jobs"] == dict(ready=0, delayed=2, claimed=0, running=0, dead=1,
                                              succeeded=0, failed=2, retried=1,
                                              dead_lettered=1)

        requeued = cli(url, "dlq", "requeue", row["id"])
        assert requeued.returncode == 0, requeued.stderr
        assert broker.inspector().queues()["jobs"].ready == 1
        assert cli(url, "dlq", "list").stdout.strip() == "no dead letters"

        purged = cli(url, "purge", "jobs", "-y")
        assert purged.returncode == 0, purged.stderr
        counts = broker.inspector().queues()["jobs"]
        assert (counts.ready, counts.delayed, counts.dead) == (0, 0, 0)
    finally:
        broker.close()


def test_an_undecodable_dead_letter_is_shown_literally(url):
    client = redis.Redis.from_url(url)
    try:
        client.zadd("dramatiq:jobs.XQ", {"odd-1": 1_700_000_000_000})
        client.hset("dramatiq:jobs.XQ.msgs", "odd-1", b"\x1b[31mnot a message")
    finally:
        client.close()
    shown = cli(url, "dlq", "show", "odd-1")
    assert shown.returncode == 0, shown.stderr
    assert "reason:      undecodable: " in shown.stdout
    assert "\x1b" not in shown.stdout  # a control character is printed as an escape
    listed = cli(url, "dlq", "list")
    assert "odd-1" in listed.stdout and "undecodable" in listed.stdout
    purged = cli(url, "dlq", "purge", "--all", "-y")
    assert purged.returncode == 0, purged.stderr
    assert cli(url, "dlq", "list").stdout.strip() == "no dead letters"

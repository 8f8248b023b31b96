"""The Redis broker against a real server (the session's private ``redis-server``).

Every test works in its own namespace and deletes its keys afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest
from helpers import running_worker, wait_for

import liteq
import liteq.broker
from liteq.brokers.redis import RedisBroker
from liteq.common import current_millis
from liteq.errors import ConnectionFailed, ResultFailure, ResultMissing, ResultTimeout
from liteq.message import Message

redis = pytest.importorskip("redis")

ROOT = Path(__file__).resolve().parents[2]
HAS_DRAMATIQ = importlib.util.find_spec("dramatiq") is not None




@pytest.fixture
def broker(redis_url: str, ns: str) -> Iterator[RedisBroker]:
    previous = liteq.broker._broker
    made = RedisBroker(url=redis_url, namespace=ns)
    liteq.broker.set_broker(made)
    try:
        yield made
    finally:
        made.close()
        liteq.broker.set_broker(previous)  # type: ignore[arg-type]


# -- round trip and layout ---------------------------------------------------------------

def test_a_consumed_message_equals_the_sent_one_and_ack_removes_it(broker, r, ns):
    @liteq.actor
    def add(x, y):
        return x + y

    sent = add.send(1, 2)
    consumer = broker.consume("default")
    try:
        [got] = consumer.exchange([], 10)
        assert got.message == sent
        assert broker.qsize("default") == 1  # running counts until acknowledged
        assert consumer.exchange([got], 0) == []
        assert broker.qsize("default") == 0
        assert r.hlen(f"{ns}:default.msgs") == 0
        assert r.scard(f"{ns}:__acks__.{broker.broker_id}.default") == 0
    finally:
        consumer.close()


def test_enqueue_writes_dramatiqs_layout(broker, r, ns):
    @liteq.actor(queue_name="emails")
    def send_email(to):
        pass

    sent = send_email.send("a@example.com")
    rid = sent.options["redis_message_id"]
    assert r.lrange(f"{ns}:emails", 0, -1) == [rid.encode()]
    body = r.hget(f"{ns}:emails.msgs", rid)
    assert body == sent.encode()
    envelope = json.loads(body)
    assert list(envelope) == ["queue_name", "actor_name", "args", "kwargs", "options",
                              "message_id", "message_timestamp"]
    assert envelope["queue_name"] == "emails" and envelope["args"] == ["a@example.com"]
    assert envelope["options"]["redis_message_id"] == rid
    assert b'", "' not in body  # compact JSON, as Dramatiq writes it

    delayed = send_email.send_with_options(args=("b@example.com",), delay=60000)
    drid = delayed.options["redis_message_id"]
    assert drid != rid
    assert r.lrange(f"{ns}:emails.DQ", 0, -1) == [drid.encode()]
    denvelope = json.loads(r.hget(f"{ns}:emails.DQ.msgs", drid))
    assert denvelope["options"]["eta"] >= current_millis() + 50000

    consumer = broker.consume("emails")
    try:
        [got] = consumer.exchange([], 10)
        acks = f"{ns}:__acks__.{broker.broker_id}.emails"
        assert r.smembers(acks) == {rid.encode()}
        # The delayed message is held by the consumer, acknowledged on the delay queue.
        assert r.smembers(acks + ".DQ") == {drid.encode()}
        assert r.zscore(f"{ns}:__heartbeats__", broker.broker_id) is not None
        got.fail()
        consumer.exchange([got], 0)
        assert r.zrange(f"{ns}:emails.XQ", 0, -1) == [rid.encode()]
        assert abs(r.zscore(f"{ns}:emails.XQ", rid) - current_millis()) < 60000
        # The dead letter is the body sent plus why and when it died (options Dramatiq
        # ignores).
        dead = json.loads(r.hget(f"{ns}:emails.XQ.msgs", rid))
        assert dead.pop("options") == dict(envelope["options"], failed_at=ANY,
                                           failure_reason="failed by middleware",
                                           traceback=None)
        assert dead == {k: v for k, v in envelope.items() if k != "options"}
        assert r.hlen(f"{ns}:emails.msgs") == 0
        [letter] = broker.dead_letters
        assert letter.message_id == sent.message_id and letter.args == sent.args
    finally:
        consumer.close()
    # Closing returned the held delayed message to its delay queue.
    assert r.lrange(f"{ns}:emails.DQ", 0, -1) == [drid.encode()]
    assert r.scard(f"{ns}:__acks__.{broker.broker_id}.emails.DQ") == 0


def test_enqueue_many_and_a_worker_over_two_queues(broker):
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    @liteq.actor(queue_name="a")
    def on_a(n):
        with lock:
            seen.append(("a", n))

    @liteq.actor(queue_name="b")
    def on_b(n):
        with lock:
            seen.append(("b", n))

    broker.enqueue_many([on_a.message(n) for n in range(200)]
                        + [on_b.message(n) for n in range(200)])
    with running_worker(broker, worker_threads=4):
        broker.join("a", timeout=20000)
        broker.join("b", timeout=20000)
    assert sorted(seen) == sorted([("a", n) for n in range(200)] + [("b", n) for n in range(200)])


# -- delays, dead letters, failures ---------------------------------------------------------

def test_a_worker_consumes_a_queue_declared_after_it_started(broker):
    """Dramatiq's testing style: the worker starts before the actors exist; the consumer's
    queue list (read by every Lua call) grows with each declared queue."""
    ran = []
    with running_worker(broker, worker_threads=1):
        @liteq.actor(broker=broker, queue_name="later")
        def later(x):
            ran.append(x)

        later.send(7)
        later.send_with_options(args=(8,), delay=50)
        wait_for(lambda: sorted(ran) == [7, 8], timeout=20)
        broker.join("later", timeout=20000)


def test_a_delayed_message_runs_after_its_eta_and_keeps_its_identity(broker):
    ran = {}

    @liteq.actor
    def stamp():
        from liteq.middleware import CurrentMessage

        ran["at"] = current_millis()
        ran["message"] = CurrentMessage.get_current_message()

    broker.add_middleware(liteq.middleware.CurrentMessage())
    with running_worker(broker, worker_threads=1):
        sent = stamp.send_with_options(delay=300)
        wait_for(lambda: "at" in ran, timeout=20)
        broker.join("default", timeout=5000)
    assert ran["at"] >= sent.options["eta"]
    received = ran["message"]
    assert received.message_id == sent.message_id and received.queue_name == "default"
    assert "eta" not in received.options


def test_dead_letters_after_retries_and_fail_fast_join(broker, r, ns):
    attempts = []

    @liteq.actor(max_retries=2, min_backoff=10, max_backoff=20)
    def flaky():
        attempts.append(1)
        raise RuntimeError("always")

    sent = flaky.send()
    with running_worker(broker, worker_threads=1):
        with pytest.raises(RuntimeError, match="always"):
            broker.join("default", timeout=30000, fail_fast=True)
        broker.join("default", timeout=30000)
    assert len(attempts) == 3
    [dead] = broker.dead_letters
    # The message as the worker last held it (as on SQLite): Retries counted the last
    # attempt before giving up; the traceback and reason came along.
    assert dead.message_id == sent.message_id and dead.options["retries"] == 3
    assert dead.options["failure_reason"] == "RuntimeError: always"
    assert "RuntimeError: always" in dead.options["traceback"]
    assert r.zcard(f"{ns}:default.XQ") == 1
    # flush keeps dead letters; flush_all deletes them.
    broker.flush("default")
    assert len(broker.dead_letters) == 1
    broker.flush_all()
    assert broker.dead_letters == []


def test_maintenance_expires_dead_letters(redis_url, ns, r):
    broker = RedisBroker(url=redis_url, namespace=ns, dead_message_ttl=1)
    try:
        broker.declare_queue("default")
        broker.enqueue(Message("default", "gone", (), {}, {}))
        consumer = broker.consume("default")
        [got] = consumer.exchange([], 1)
        got.fail()
        consumer.exchange([got], 0)
        consumer.close()
        assert r.zcard(f"{ns}:default.XQ") == 1

        def expired() -> bool:
            broker.maintenance()
            return r.zcard(f"{ns}:default.XQ") == 0
        wait_for(expired, timeout=5)
        assert r.hlen(f"{ns}:default.XQ.msgs") == 0
    finally:
        broker.close()


def test_undecodable_bodies_are_dead_lettered(broker, r, ns):
    broker.declare_queue("default")
    r.hset(f"{ns}:default.msgs", "bad", b"not json")
    r.rpush(f"{ns}:default", "bad")
    good = broker.enqueue(Message("default", "x", (), {}, {}))
    consumer = broker.consume("default")
    try:
        assert [p.message for p in consumer.exchange([], 10)] == [good]
        consumer.exchange([], 0)
        assert r.zrange(f"{ns}:default.XQ", 0, -1) == [b"bad"]
    finally:
        consumer.close()


def test_an_envelope_liteq_cannot_trust_is_dead_lettered_not_run(broker, r, ns):
    broker.declare_queue("default")
    envelope = Message("default", "x", (), {}, {}).asdict()
    for rid, change in (("null", {"options": None}), ("list", {"options": []}),
                        ("tampered", {"options": {"max_retries": "3"}})):
        r.hset(f"{ns}:default.msgs", rid, json.dumps({**envelope, **change}).encode())
        r.rpush(f"{ns}:default", rid)
    consumer = broker.consume("default")
    try:
        assert consumer.exchange([], 10) == []
        consumer.exchange([], 0)
        assert sorted(r.zrange(f"{ns}:default.XQ", 0, -1)) == [b"list", b"null", b"tampered"]
    finally:
        consumer.close()


def test_priority_is_ignored_with_one_warning(broker, caplog):
    @liteq.actor(priority=10)
    def job():
        pass

    with caplog.at_level(logging.WARNING, logger="liteq.RedisBroker"):
        job.send()
        job.send_with_options(priority=5)
    warnings = [rec for rec in caplog.records if "no message priority" in rec.getMessage()]
    assert len(warnings) == 1
    assert broker.qsize("default") == 2


# -- waiting without polling ------------------------------------------------------------------

def test_an_idle_consumer_wakes_on_enqueue_and_on_wakeup(broker, redis_url, ns):
    broker.declare_queue("default")
    consumer = broker.consume("default")
    other = RedisBroker(url=redis_url, namespace=ns)
    other.declare_queue("default")
    try:
        assert consumer.exchange([], 5) == []
        # Nothing happens: wait lasts its timeout.
        started = time.monotonic()
        consumer.wait(0.3)
        assert time.monotonic() - started >= 0.25
        # An enqueue from another broker (process) ends the wait at once.
        timer = threading.Timer(0.1, lambda: other.enqueue(Message("default", "x", (), {}, {})))
        timer.start()
        started = time.monotonic()
        consumer.wait(10)
        assert time.monotonic() - started < 5
        assert len(consumer.exchange([], 5)) == 1
        # wakeup() from another thread ends the wait at once.
        consumer.exchange([], 5)
        timer = threading.Timer(0.1, consumer.wakeup)
        timer.start()
        started = time.monotonic()
        consumer.wait(10)
        assert time.monotonic() - started < 5
        timer.join()
    finally:
        consumer.close()
        other.close()


# -- a worker that dies -----------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    from liteq.brokers.redis import RedisBroker
    broker = RedisBroker(url=sys.argv[1], namespace=sys.argv[2], heartbeat_timeout=500,
                         maintenance_chance=0)
    broker.declare_queue("default")
    consumer = broker.consume("default", prefetch=5)
    got = consumer.exchange([], 5)
    print("fetched", len(got), broker.broker_id, flush=True)
    time.sleep(600)
""")


def test_a_killed_workers_messages_are_requeued_by_maintenance(redis_url, ns, r):
    broker = RedisBroker(url=redis_url, namespace=ns, heartbeat_timeout=500,
                         maintenance_chance=1_000_000)
    seen = set()

    @liteq.actor(broker=broker)
    def job(n):
        seen.add(n)

    try:
        for n in range(5):
            job.send(n)
        child = subprocess.Popen([sys.executable, "-c", CHILD, redis_url, ns],
                                 stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)))
        try:
            line = child.stdout.readline().split()
            assert line[:2] == ["fetched", "5"], line
            child_id = line[2]
            assert r.llen(f"{ns}:default") == 0
            assert r.scard(f"{ns}:__acks__.{child_id}.default") == 5
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            child.stdout.close()
        with running_worker(broker, worker_threads=2):
            wait_for(lambda: seen == set(range(5)), timeout=20)
            broker.join("default", timeout=10000)
        assert not r.exists(f"{ns}:__acks__.{child_id}.default")
        assert r.zscore(f"{ns}:__heartbeats__", child_id) is None
    finally:
        broker.close()


# -- connections and credentials --------------------------------------------------------------

def test_a_server_that_is_down_gives_connection_failed_without_the_password():
    from benchmarks.servers import free_port

    port = free_port()
    broker = RedisBroker(url=f"redis://:s3cr3t-pw@127.0.0.1:{port}/0", namespace="down",
                         connection_attempts=2)
    try:
        broker.declare_queue("default")
        assert "s3cr3t" not in repr(broker)
        started = time.monotonic()
        with pytest.raises(ConnectionFailed) as info:
            broker.enqueue(Message("default", "x", (), {}, {}))
        assert time.monotonic() - started < 10
        text = str(info.value)
        assert "s3cr3t" not in text and f"127.0.0.1:{port}" in text and "2 attempt" in text
        with pytest.raises(ConnectionFailed):
            broker.consume("default")
    finally:
        broker.close()


def test_credentials_stay_out_of_repr_and_remote_hosts_without_password_warn():
    with pytest.warns(RuntimeWarning, match="no password"):
        RedisBroker(url="redis://redis.example.invalid:6379/0").close()
    with pytest.warns(RuntimeWarning, match="no password"):
        RedisBroker(host="10.1.2.3", port=6379).close()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for b in (RedisBroker(url="redis://password@localhost:6379/0"),
                  RedisBroker(url="redis://user:hunter2@redis.example.invalid:6379/1"),
                  RedisBroker(host="localhost", port=6379, db=0),
                  RedisBroker(host="127.0.0.1", password="hunter2")):
            assert "hunter2" not in repr(b) and "password" not in repr(b)
            b.close()
    seed = RedisBroker(url="redis://password@localhost:6379/0", namespace="dramatiq",
                       connection_pool_kwargs={"max_connections": 20})
    kwargs = seed.client.connection_pool.connection_kwargs
    assert kwargs["password"] == "password" and not kwargs.get("username")
    assert seed.client.connection_pool.max_connections == 20
    assert repr(seed) == "RedisBroker('redis://localhost:6379/0', namespace='dramatiq')"
    seed.close()


def test_broker_from_url_builds_a_redis_broker(redis_url, ns):
    made = liteq.broker_from_url(redis_url, namespace=ns)
    try:
        assert isinstance(made, RedisBroker)
        made.ping()
    finally:
        made.close()


# -- results and rate limits on Redis ---------------------------------------------------------

def test_results_in_redis(broker, redis_url, ns):
    from liteq.results import Results
    from liteq.results.backends import RedisBackend

    backend = RedisBackend(url=redis_url, namespace=f"{ns}-results")
    broker.add_middleware(Results(backend=backend))

    @liteq.actor(store_results=True)
    def calculate(x, y):
        return x + y

    @liteq.actor(store_results=True, max_retries=0)
    def broken():
        raise ValueError("nope")

    pending = calculate.send(1, 1)
    with pytest.raises(ResultMissing):
        backend.get_result(pending)
    with pytest.raises(ResultTimeout):
        backend.get_result(pending, block=True, timeout=100)
    with running_worker(broker, worker_threads=2):
        assert backend.get_result(pending, block=True, timeout=20000) == 2
        message = calculate.send(5, 3)
        assert backend.get_result(message, block=True, timeout=20000) == 8
        failed = broken.send()
        with pytest.raises(ResultFailure) as info:
            backend.get_result(failed, block=True, timeout=20000)
        assert info.value.orig_exc_type == "ValueError" and info.value.orig_exc_msg == "nope"
    assert backend.get_result(message) == 8  # still there for other readers


def test_concurrent_rate_limiter_on_redis_excludes_mutually(redis_url, ns):
    from liteq.rate_limits import ConcurrentRateLimiter
    from liteq.rate_limits.backends import RedisBackend

    backend = RedisBackend(url=redis_url)
    mutex = ConcurrentRateLimiter(backend, f"{ns}-mutex", limit=1, ttl=60000)
    inside = 0
    most = 0
    entered = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal inside, most, entered
        for _ in range(50):
            with mutex.acquire(raise_on_failure=False) as acquired:
                if not acquired:
                    continue
                with lock:
                    inside += 1
                    entered += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1 and entered > 0
    with mutex.acquire():
        with pytest.raises(liteq.errors.RateLimitExceeded):
            with mutex.acquire():
                pass


# -- Dramatiq on the same server ----------------------------------------------------------------

needs_dramatiq = pytest.mark.skipif(not HAS_DRAMATIQ, reason="dramatiq is not installed")


@pytest.fixture
def dramatiq_broker(redis_url, ns):
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker as DramatiqRedisBroker

    made = DramatiqRedisBroker(client=redis.Redis.from_url(redis_url), namespace=ns)
    yield made
    made.close()
    del dramatiq


@needs_dramatiq
def test_dramatiq_sends_and_liteq_runs(broker, dramatiq_broker):
    import dramatiq

    ran = []

    @dramatiq.actor(broker=dramatiq_broker, queue_name="shared", actor_name="greet")
    def greet_d(name):
        pass

    @liteq.actor(queue_name="shared", actor_name="greet")
    def greet(name):
        ran.append(name)

    now_message = greet_d.send("now")
    greet_d.send_with_options(args=("later",), delay=200)
    with running_worker(broker, worker_threads=2):
        wait_for(lambda: sorted(ran) == ["later", "now"], timeout=20)
        broker.join("shared", timeout=10000)
    assert now_message.options["redis_message_id"]


@needs_dramatiq
def test_liteq_sends_and_dramatiq_runs(broker, dramatiq_broker):
    import dramatiq

    ran = []

    @dramatiq.actor(broker=dramatiq_broker, queue_name="shared", actor_name="greet")
    def greet_d(name):
        ran.append(name)

    @liteq.actor(queue_name="shared", actor_name="greet")
    def greet(name):
        pass

    greet.send("now")
    greet.send_with_options(args=("later",), delay=200)
    worker = dramatiq.Worker(dramatiq_broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: sorted(ran) == ["later", "now"], timeout=20)
        broker.join("shared", timeout=10000)
    finally:
        worker.stop()

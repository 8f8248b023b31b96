"""What the inspect contract means on Redis in particular (the broker-neutral part is
tests/contract/test_inspect.py): delayed messages a consumer holds, counters written
inside the script calls the consumer already makes, dead letters Dramatiq reads, bodies
that do not decode, the registry of a pool whose process is killed."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import wait_for
from pools import Pool

import liteq
from liteq.broker import MessageProxy
from liteq.brokers.inspect import QueueCounts
from liteq.brokers.redis import RedisBroker
from liteq.brokers.redis.inspect import NO_REASON, RedisInspector

redis = pytest.importorskip("redis")
HAS_DRAMATIQ = importlib.util.find_spec("dramatiq") is not None
HOUR = 3_600_000


@pytest.fixture
def broker(redis_url: str, ns: str) -> Iterator[RedisBroker]:
    made = RedisBroker(url=redis_url, namespace=ns, middleware=[], maintenance_chance=0)
    made.declare_queue("q")
    yield made
    made.close()


def send(broker: RedisBroker, n: int, *, queue: str = "q", delay: int | None = None,
         actor: str = "task") -> list[liteq.Message[Any]]:
    return broker.enqueue_many([liteq.Message(queue, actor, (i,), {}, {}) for i in range(n)],
                               delay=delay)


def counts(broker: RedisBroker, queue: str = "q") -> dict[str, int | None]:
    return broker.inspector().queues().get(queue, QueueCounts()).asdict()


def expect(**figures: int) -> dict[str, int | None]:
    return QueueCounts(**figures).asdict()


def test_queues_are_those_with_keys_or_counters_not_other_keys(broker, r, ns, redis_url):
    """Seen by a process that declared no queue: a queue only Dramatiq wrote to is found
    by its keys, an emptied one by its counters; liteq's own keys (heartbeats, registry,
    wake-up lists) and keys that name no queue are not queues."""
    r.rpush(f"{ns}:from_dramatiq", "x")
    r.hset(f"{ns}:from_dramatiq.msgs", "x", b"{}")
    r.set(f"{ns}:not a queue!", 1)
    send(broker, 1)
    consumer = broker.consume("q")
    consumer.exchange(consumer.exchange([], 1), 0)
    consumer.wakeup()
    consumer.close()
    assert r.llen(f"{ns}:q") == r.hlen(f"{ns}:q.msgs") == 0
    outsider = RedisBroker(url=redis_url, namespace=ns, middleware=[])
    try:
        found = RedisInspector(outsider).queues()
    finally:
        outsider.close()
    assert sorted(found) == ["from_dramatiq", "q"]
    assert found["q"].succeeded == 1


def test_delayed_messages_a_consumer_holds_count_as_delayed_not_claimed(broker, r, ns):
    send(broker, 2)
    send(broker, 3, delay=HOUR)
    assert counts(broker) == expect(ready=2, delayed=3)
    consumer = broker.consume("q")
    try:
        # The consumer fetched the delayed messages into its memory (and its ack set of
        # q.DQ): the delay list is empty, yet they are still delayed, not claimed.
        [got] = consumer.exchange([], 1)
        assert r.llen(f"{ns}:q.DQ") == 0
        assert r.scard(f"{ns}:__acks__.{broker.broker_id}.q.DQ") == 3
        assert counts(broker) == expect(ready=1, delayed=3, claimed=1)
        consumer.exchange([got], 0)
        assert counts(broker) == expect(ready=1, delayed=3, succeeded=1)
    finally:
        consumer.close()
    assert r.llen(f"{ns}:q.DQ") == 3  # handed back on close
    assert counts(broker) == expect(ready=1, delayed=3, succeeded=1)


def _settled(consumer: Any, n: int) -> list[MessageProxy]:
    """``3 n`` fetched messages finished as ``n`` successes, ``n`` failed attempts that were
    retried and ``n`` dead-lettered ones."""
    got: list[MessageProxy] = []
    wait_for(lambda: got.extend(consumer.exchange([], 3 * n - len(got))) or len(got) == 3 * n,
             timeout=10)
    for proxy in got[n:]:
        proxy.stuff_exception(ValueError(f"attempt of {proxy.message_id} failed"))
    for proxy in got[2 * n:]:
        proxy.fail()
    return got


def test_counters_are_written_in_the_exchange_call_not_per_message():
    """One script call settles 300 messages: the server sees one EVALSHA, and inside it
    one HINCRBY per counter of the queue, not one per message."""
    from benchmarks.servers import redis_server

    with redis_server() as url:
        broker = RedisBroker(url=url, namespace="n", middleware=[], maintenance_chance=0)
        client = redis.Redis.from_url(url)
        try:
            broker.declare_queue("q")
            send(broker, 300)
            consumer = broker.consume("q", prefetch=300)
            done = _settled(consumer, 100)
            client.config_resetstat()
            consumer.exchange(done, 0)
            stats = client.info("commandstats")
            consumer.close()
            assert stats["cmdstat_evalsha"]["calls"] == 1, stats
            assert stats["cmdstat_hincrby"]["calls"] == 4, stats
            assert counts(broker) == expect(dead=100, succeeded=100, failed=200, retried=100,
                                            dead_lettered=100)
        finally:
            client.close()
            broker.close()


def test_an_ack_that_comes_too_late_is_not_counted(broker, r, ns):
    """A message purged (or released) while it ran is not counted when its worker acks."""
    send(broker, 2)
    consumer = broker.consume("q")
    try:
        got = consumer.exchange([], 2)
        assert broker.inspector().purge("q") == 2
        consumer.exchange(got, 0)
    finally:
        consumer.close()
    assert counts(broker) == expect()


def test_purge_deletes_ready_delayed_held_and_claimed_messages(broker, r, ns):
    send(broker, 3)
    send(broker, 2, delay=HOUR)
    consumer = broker.consume("q")
    try:
        consumer.exchange([], 1)  # 1 claimed, the 2 delayed held
        assert counts(broker) == expect(ready=2, delayed=2, claimed=1)
        assert broker.inspector().purge("q") == 5
        assert counts(broker) == expect()
        assert r.hlen(f"{ns}:q.msgs") == r.hlen(f"{ns}:q.DQ.msgs") == 0
    finally:
        consumer.close()
    assert counts(broker) == expect()  # closing did not bring the held ones back


def test_an_undecodable_body_is_a_dead_letter_that_says_so(broker, r, ns):
    r.hset(f"{ns}:q.msgs", "bad-1", b"\x00not a message")
    r.rpush(f"{ns}:q", "bad-1")
    consumer = broker.consume("q")
    try:
        assert consumer.exchange([], 5) == []
        consumer.exchange([], 0)  # the next call dead-letters it
    finally:
        consumer.close()
    inspector = broker.inspector()
    [letter] = inspector.dead_letters()
    assert letter.id == "bad-1" and letter.queue == "q" and letter.message is None
    assert letter.reason.startswith("undecodable: ") and letter.traceback is None
    assert inspector.dead_letter("bad-1") == letter
    # Not an attempt of a task: dead-lettered, not failed.
    assert counts(broker) == expect(dead=1, dead_lettered=1)
    assert inspector.requeue_dead(["bad-1"]) == 1
    assert r.hget(f"{ns}:q.msgs", "bad-1") == b"\x00not a message"


def _dead_by_liteq(broker: RedisBroker) -> liteq.Message[Any]:
    """Dead-letter one message the way a liteq worker does after its last retry."""
    [sent] = send(broker, 1, actor="greet")
    consumer = broker.consume("q")
    try:
        got: list[MessageProxy] = []
        wait_for(lambda: got.extend(consumer.exchange([], 1)) or bool(got), timeout=10)
        [proxy] = got
        proxy.options["retries"] = 3
        proxy.options["traceback"] = "Traceback (most recent call last):\nValueError: no\n"
        proxy.stuff_exception(ValueError("no"))
        proxy.fail()
        consumer.exchange([proxy], 0)
    finally:
        consumer.close()
    return sent


def test_dead_letters_keep_reason_and_traceback_and_requeue_without_them(broker, r, ns):
    sent = _dead_by_liteq(broker)
    rid = sent.options["redis_message_id"]
    inspector = broker.inspector()
    [letter] = inspector.dead_letters()
    assert (letter.id, letter.message_id, letter.actor_name) == (rid, sent.message_id, "greet")
    assert letter.reason == "ValueError: no"
    assert letter.traceback == "Traceback (most recent call last):\nValueError: no\n"
    assert letter.failed_at == int(r.zscore(f"{ns}:q.XQ", rid))
    # The message's own id (as the worker's log names it) finds it too.
    assert inspector.dead_letter(sent.message_id) == letter
    assert inspector.dead_letter("no-such-id") is None

    assert inspector.requeue_dead([rid]) == 1
    body = json.loads(r.hget(f"{ns}:q.msgs", rid))
    assert r.lrange(f"{ns}:q", 0, -1) == [rid.encode()]
    # As on every broker: the message as it was sent, its retries and the failure reset.
    assert body["options"] == sent.options
    assert counts(broker) == expect(ready=1, failed=1, dead_lettered=1)


def test_the_registry_entry_rides_on_the_heartbeat_and_goes_with_the_consumer(broker, r, ns):
    consumer = broker.consume("q")
    consumer.describe = lambda: {"threads": 3, "running": [], "processed": 7}
    try:
        consumer.exchange([], 0)
        [entry] = broker.inspector().workers()
        assert entry["owner"] == broker.broker_id and entry["pid"] == os.getpid()
        assert entry["queues"] == ["q"] and entry["threads"] == 3
        assert entry["processed"] == 7 and entry["running_queues"] == {}
        # An entry whose worker left the heartbeat set (e.g. forgotten by Dramatiq's
        # maintenance) is dropped.
        r.zrem(f"{ns}:__heartbeats__", broker.broker_id)
        assert broker.inspector().workers() == []
        assert not r.hexists(f"{ns}:__liteq__.workers", broker.broker_id)
    finally:
        consumer.close()


def test_a_killed_pool_process_leaves_the_registry(tmp_path, redis_url):
    """kill -9 of one process of a real pool: the supervisor releases it, its entry goes,
    its replacement's comes."""
    db_url = redis_url.rsplit("/", 1)[0] + "/8"
    client = redis.Redis.from_url(db_url)
    client.flushdb()
    env = dict(os.environ, LITEQ_BROKER_URL=db_url, PYTHONUNBUFFERED="1",
               LITEQ_TEST_DIR=str(tmp_path))
    pool = Pool(tmp_path, env, "-p", "2", "-t", "2", "-Q", "work", modules=("inspect_tasks",))
    broker = RedisBroker(url=db_url, middleware=[])
    try:
        inspector = broker.inspector()
        first = sorted(pool.wait_ready(2))
        wait_for(lambda: sorted(w["pid"] for w in inspector.workers()) == first, timeout=30)
        os.kill(first[0], signal.SIGKILL)
        wait_for(lambda: len(pool.children()) == 2 and first[0] not in pool.children(),
                 timeout=30)
        now = sorted(pool.children())
        wait_for(lambda: sorted(w["pid"] for w in inspector.workers()) == now, timeout=30)
    finally:
        pool.kill()
        broker.close()
        client.flushdb()
        client.close()


@pytest.mark.skipif(not HAS_DRAMATIQ, reason="dramatiq is not installed")
def test_dramatiq_reads_liteq_dead_letters_and_liteq_reads_dramatiqs(broker, r, ns, redis_url):
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker as DramatiqRedisBroker

    sent = _dead_by_liteq(broker)
    rid = sent.options["redis_message_id"]
    body = r.hget(f"{ns}:q.XQ.msgs", rid)
    seen = dramatiq.Message.decode(body)
    assert seen.message_id == sent.message_id and seen.args == (0,)
    assert seen.options["failure_reason"] == "ValueError: no"
    assert "ValueError" in seen.options["traceback"]

    from dramatiq.middleware import Retries

    peer = DramatiqRedisBroker(client=redis.Redis.from_url(redis_url), namespace=ns,
                               middleware=[Retries(max_retries=0)])
    ran: list[int] = []

    @dramatiq.actor(broker=peer, queue_name="q", actor_name="greet")
    def greet(n: int) -> None:
        ran.append(n)
        raise RuntimeError("dramatiq gave up")

    try:
        # A message Dramatiq's worker dead-letters is listed, with no reason of liteq's.
        theirs = greet.send(5)
        # liteq's dead letter, requeued, runs on a Dramatiq worker.
        assert broker.inspector().requeue_dead([rid]) == 1
        worker = dramatiq.Worker(peer, worker_threads=1, worker_timeout=100)
        worker.start()
        try:
            wait_for(lambda: len(broker.inspector().dead_letters()) == 2, timeout=20)
        finally:
            worker.stop()
        assert sorted(ran) == [0, 5]
        letters = {d.message_id: d for d in broker.inspector().dead_letters()}
        assert letters[theirs.message_id].reason == NO_REASON
        assert letters[theirs.message_id].failed_at is not None
    finally:
        peer.close()


def test_a_top_refresh_costs_the_same_few_round_trips_for_any_queue_and_message_count(
        broker, r, ns, monkeypatch):
    """One ``liteq top`` refresh (snapshot + extras) sends the same handful of requests
    for 2 queues of 10 messages as for 20 queues of 1,000: lengths, never messages."""
    from liteq.ops.monitor import extras
    from liteq.ops.snapshot import snapshot

    sent: list[int] = []
    real = redis.connection.Connection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(1)
        real(self, command, check_health)

    def refresh_cost(queues: int, each: int) -> int:
        for q in range(queues):
            broker.declare_queue(f"q{q}")
            send(broker, each, queue=f"q{q}")
            send(broker, 2, queue=f"q{q}", delay=HOUR)
        _dead_by_liteq(broker)
        inspector = RedisInspector(broker)
        extras(inspector, snapshot(inspector))  # the first refresh scans the namespace
        monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
        sent.clear()
        snap = snapshot(inspector)
        extra = extras(inspector, snap)
        monkeypatch.undo()
        assert snap["queues"]["q1"]["ready"] == each and extra["recent_dead"]
        assert set(extra["oldest_ready_age_ms"]) >= {f"q{q}" for q in range(queues)}
        return len(sent)

    small = refresh_cost(2, 10)
    broker.flush_all()
    big = refresh_cost(20, 1000)
    assert small == big <= 8, (small, big)


def test_a_message_that_no_longer_encodes_is_dead_lettered_as_enqueued(broker, r, ns):
    """A middleware left an unencodable option on a failed message: the round trip still
    goes through (the other acks with it), dead-lettering the body as it was enqueued."""
    [sent, other] = send(broker, 2)
    consumer = broker.consume("q")
    try:
        bad, good = consumer.exchange([], 2)
        bad.options["handle"] = object()
        bad.fail()
        consumer.exchange([bad, good], 0)
    finally:
        consumer.close()
    [letter] = broker.inspector().dead_letters()
    assert letter.body == r.hget(f"{ns}:q.XQ.msgs", letter.id) == sent.encode()
    assert counts(broker) == expect(dead=1, succeeded=1, failed=1, dead_lettered=1)

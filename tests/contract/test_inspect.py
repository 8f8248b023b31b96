"""The inspect contract (liteq/brokers/inspect.py), run unchanged over every broker.

Each case builds a known state on a real broker (real ``liteq worker`` pools for what
needs a worker: retries, running tasks, the registry) and checks what
``broker.inspector()`` says about it. A broker joins the suite with one entry of
TARGETS: a factory giving its URL (and environment) for a fresh, empty store, and the
counts it cannot know (which must then be ``None``, never a guess).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from pools import Pool

import liteq
from liteq.brokers.inspect import COUNT_FIELDS, DeadLetter, Inspector, QueueCounts
from liteq.brokers.registry import broker_from_url


@dataclasses.dataclass
class Target:
    """Where a broker under test lives: its URL and what its processes need."""

    url: str
    #: Extra environment of the worker processes (the task module reads
    #: LITEQ_TEST_BROKER_OPTIONS, a JSON object of broker keyword arguments).
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Keyword arguments of the test's own broker (the producer and the inspector).
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Count fields this broker cannot know: the inspector must give None for them.
    unknown: frozenset[str] = frozenset()


def sqlite_target(request: pytest.FixtureRequest) -> Target:
    return Target(f"sqlite:///{request.getfixturevalue('tmp_path') / 'inspect.db'}")


#: The database of the session's Redis server the suite uses (emptied before and after).
REDIS_DB = 9


def redis_target(request: pytest.FixtureRequest) -> Target:
    """Dramatiq's default namespace in an emptied database of the session's server."""
    pytest.importorskip("redis", reason="redis-py is not installed (pip install 'liteq[redis]')")
    import redis

    url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + f"/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()

    def empty() -> None:
        client.flushdb()
        client.close()

    request.addfinalizer(empty)
    return Target(url)


QUEUES = ("work", "held", "idle")


def rabbitmq_target(request: pytest.FixtureRequest) -> Target:
    """The session's RabbitMQ node, with the suite's queues deleted before and after;
    lifetime totals die with the workers that counted them there."""
    from contract.brokers import delete_queues

    url = request.getfixturevalue("rabbitmq_url")
    delete_queues(url, QUEUES)
    request.addfinalizer(lambda: delete_queues(url, QUEUES))
    # The registry is the server's: wait until the consumers of earlier tests (killed
    # ones stay up to WORKER_WINDOW) have left it.
    from liteq.brokers.rabbitmq import RabbitmqBroker
    from liteq.brokers.rabbitmq.registry import WORKER_WINDOW

    broker = RabbitmqBroker(url=url, middleware=[])
    inspector = broker.inspector()
    try:
        wait_for(lambda: not inspector.workers(), timeout=WORKER_WINDOW / 1000 + 10)
    finally:
        inspector.close()
        broker.close()
    return Target(url, unknown=frozenset({"succeeded", "failed", "retried", "dead_lettered"}))


#: One entry per broker: a factory of a fresh, empty store (servers from tests/conftest.py).
TARGETS: dict[str, Callable[[pytest.FixtureRequest], Target]] = {
    "sqlite": sqlite_target, "redis": redis_target, "rabbitmq": rabbitmq_target}


@dataclasses.dataclass
class Inspected:
    """A broker under test: a producer broker, its inspector, and pools of its workers."""

    name: str
    target: Target
    broker: liteq.Broker
    inspector: Inspector
    tmp_path: Path
    pools: list[Pool] = dataclasses.field(default_factory=list)

    def send(self, queue: str, actor: str, *args: Any, delay: int | None = None) -> str:
        message = self.broker.enqueue(liteq.Message(queue, actor, args, {}, {}), delay=delay)
        return message.message_id

    def pool(self, *args: str) -> Pool:
        """``liteq worker inspect_tasks ARGS`` on this broker (killed at the end)."""
        env = dict(os.environ, LITEQ_BROKER_URL=self.target.url, PYTHONUNBUFFERED="1",
                   LITEQ_TEST_DIR=str(self.tmp_path), **self.target.env)
        pool = Pool(self.tmp_path, env, *args, modules=("inspect_tasks",))
        self.pools.append(pool)
        return pool

    def stop(self, pool: Pool) -> None:
        """Stop ``pool`` gracefully (SIGTERM): its finished messages are settled."""
        pool.signal(signal.SIGTERM)
        assert pool.wait(60) == 0, pool.output()

    def counts(self, queue: str) -> QueueCounts:
        return self.inspector.queues().get(queue, QueueCounts())

    def expect(self, queue: str, **expected: int) -> dict[str, Any]:
        """``expected`` counts of ``queue`` (every other field 0), unknown fields None."""
        figures = dict.fromkeys(COUNT_FIELDS, 0) | expected
        return {k: None if k in self.target.unknown else v for k, v in figures.items()}

    def dead_from(self, queue: str, n: int) -> list[str]:
        """Send ``n`` messages to ``queue``, then dead-letter its next ``n`` through the
        broker's consumer (a nack with an exception); returns their message ids in the
        order they were dead-lettered."""
        for i in range(n):
            self.send(queue, "doomed", i)
        ids = []
        consumer = self.broker.consume(queue, prefetch=1, timeout=100)
        try:
            for _ in range(n):
                proxy = _next(consumer)
                proxy.stuff_exception(RuntimeError(f"{proxy.message_id} given up on"))
                proxy.fail()
                consumer.nack(proxy)
                ids.append(proxy.message_id)
        finally:
            consumer.close()
        return ids


def _next(consumer: Any) -> Any:
    """The next message of ``consumer`` (waiting up to 20 s)."""
    found: list[Any] = []

    def poll() -> bool:
        proxy = consumer.poll()
        if proxy is None:
            consumer.wait(0.05)
            return False
        found.append(proxy)
        return True

    wait_for(poll, timeout=20)
    return found[0]


@pytest.fixture(params=sorted(TARGETS))
def inspected(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inspected]:
    target = TARGETS[request.param](request)
    broker = broker_from_url(target.url, middleware=[], **target.options)
    for name in QUEUES:
        broker.declare_queue(name)
    inspector = broker.inspector()  # type: ignore[attr-defined]
    made = Inspected(request.param, target, broker, inspector, tmp_path)
    try:
        yield made
    finally:
        for pool in made.pools:
            pool.kill()
        inspector.close()
        broker.close()


def eventually(read: Callable[[], Any], expected: Any, timeout: float = 30) -> None:
    """Wait until ``read()`` equals ``expected`` twice in a row; then compare once more,
    for the diff. Twice: figures that come from heartbeats (RabbitMQ's claimed and
    running) may show a heartbeat older than a queue depth read a moment later."""
    matched = [False]

    def settled() -> bool:
        now = read() == expected
        twice, matched[0] = matched[0] and now, now
        return twice

    try:
        wait_for(settled, timeout=timeout, interval=0.05)
    except AssertionError:
        pass
    assert read() == expected


# ---------------------------------------------------------------------------------------
# counts
# ---------------------------------------------------------------------------------------
def test_counts_after_a_known_mix(inspected):
    """ready/delayed on a queue nobody consumes; on "work" 4 succeed, 1 succeeds after a
    retry, 1 is retried once then dead-lettered; on "held" 2 run until released."""
    for n in range(5):
        inspected.send("idle", "ok", n)
    for n in range(3):
        inspected.send("idle", "ok", n, delay=3_600_000)
    eventually(lambda: inspected.counts("idle").asdict(),
               inspected.expect("idle", ready=5, delayed=3))

    for n in range(4):
        inspected.send("work", "ok", n)
    inspected.send("work", "flaky", "a")
    inspected.send("work", "doomed", 1)
    pool = inspected.pool("-p", "1", "-t", "4", "-Q", "work", "held")
    for n in range(2):
        inspected.send("held", "block", n)
    try:
        # succeeded: 4 ok + flaky's 2nd attempt; failed: flaky's 1st, doomed's 2;
        # retried: flaky once, doomed once; dead-lettered: doomed.
        eventually(lambda: inspected.counts("work").asdict(), inspected.expect(
            "work", dead=1, succeeded=5, failed=3, retried=2, dead_lettered=1))
        wait_for(lambda: all((inspected.tmp_path / f"started-{n}").exists() for n in range(2)),
                 timeout=30)
        eventually(lambda: inspected.counts("held").asdict(),
                   inspected.expect("held", claimed=2, running=2))
        assert inspected.counts("idle").asdict() == inspected.expect("idle", ready=5, delayed=3)
        eventually(lambda: [(w["succeeded"], w["failed"], sorted(w["running"]))
                            for w in inspected.inspector.workers()],
                   [(5, 3, ["block", "block"])])
    finally:
        (inspected.tmp_path / "open").touch()
    eventually(lambda: inspected.counts("held").asdict(),
               inspected.expect("held", succeeded=2))
    inspected.stop(pool)


def test_purge_deletes_ready_and_delayed_messages_of_one_queue(inspected):
    for n in range(4):
        inspected.send("idle", "ok", n)
    inspected.send("idle", "ok", 9, delay=3_600_000)
    inspected.send("work", "ok", 1)
    inspected.dead_from("idle", 1)
    eventually(lambda: (inspected.counts("idle").ready, inspected.counts("idle").delayed),
               (4, 1))

    assert inspected.inspector.purge("idle") == 5

    assert inspected.counts("idle").asdict() == inspected.expect(
        "idle", dead=1, failed=1, dead_lettered=1)
    assert inspected.counts("work").ready == 1


# ---------------------------------------------------------------------------------------
# dead letters
# ---------------------------------------------------------------------------------------
def test_dead_letters_list_show_and_newest(inspected):
    work = inspected.dead_from("work", 3)
    idle = inspected.dead_from("idle", 2)
    inspector = inspected.inspector

    letters = inspector.dead_letters()
    assert [d.message_id for d in letters] == work + idle
    assert all(isinstance(d, DeadLetter) and isinstance(d.id, str) for d in letters)
    assert len({d.id for d in letters}) == 5
    assert [d.message_id for d in inspector.dead_letters("idle")] == idle
    assert [d.message_id for d in inspector.dead_letters("work", limit=2)] == work[:2]
    assert inspector.dead_letters("nonesuch") == []

    first = letters[0]
    assert first.queue == "work" and first.actor_name == "doomed"
    assert "given up on" in first.reason and work[0] in first.reason
    message = first.message
    assert message is not None and message.message_id == work[0] and message.args == (0,)
    assert first.deliveries is None or first.deliveries >= 0

    shown = inspector.dead_letter(first.id)
    assert shown is not None and shown.message_id == work[0] and shown.reason == first.reason
    assert [d.message_id for d in inspector.recent_dead(2)] == [idle[1], idle[0]]
    assert inspected.counts("work").dead == 3 and inspected.counts("idle").dead == 2


def test_dead_letters_requeue_and_purge_by_id_queue_and_all(inspected):
    work = inspected.dead_from("work", 3)
    idle = inspected.dead_from("idle", 2)
    inspector = inspected.inspector
    by_message = {d.message_id: d.id for d in inspector.dead_letters()}

    assert inspector.requeue_dead([by_message[work[1]]]) == 1
    assert [d.message_id for d in inspector.dead_letters("work")] == [work[0], work[2]]
    eventually(lambda: (inspected.counts("work").ready, inspected.counts("work").dead), (1, 2))

    assert inspector.purge_dead([by_message[work[0]]]) == 1
    assert [d.message_id for d in inspector.dead_letters()] == [work[2], *idle]
    assert inspector.dead_letter(by_message[work[0]]) is None

    assert inspector.requeue_dead(queue_name="idle") == 2
    assert [d.message_id for d in inspector.dead_letters()] == [work[2]]
    eventually(lambda: inspected.counts("idle").ready, 2)

    more = inspected.dead_from("idle", 1)
    seen: list[int] = []
    assert inspector.purge_dead(queue_name="work", progress=seen.append) == 1
    assert [d.message_id for d in inspector.dead_letters()] == more

    inspected.dead_from("work", 2)
    assert inspector.requeue_dead() == 3
    assert inspector.dead_letters() == []
    # work: its requeued message and the 2 new ones took the place of the 2 dead-lettered.
    eventually(lambda: (inspected.counts("work").ready, inspected.counts("idle").ready),
               (3, 3))

    inspected.dead_from("work", 2)
    assert inspector.purge_dead() == 2
    assert inspector.dead_letters() == []
    assert inspected.counts("work").dead == 0


def test_a_requeued_dead_letter_starts_afresh(inspected):
    """Same id, arguments and priority; its retry budget and the failure's traces reset,
    on every broker alike (liteq.brokers.failure.requeued_body)."""
    message = liteq.Message("idle", "doomed", (7,), {"k": "v"},
                            {"retries": 3, "traceback": "Traceback ...", "max_retries": 5})
    inspected.broker.enqueue(message)
    consumer = inspected.broker.consume("idle", prefetch=1, timeout=100)
    try:
        proxy = _next(consumer)
        proxy.stuff_exception(RuntimeError("gave up"))
        proxy.fail()
        consumer.nack(proxy)
    finally:
        consumer.close()
    inspector = inspected.inspector
    (letter,) = inspector.dead_letters("idle")
    assert inspector.requeue_dead([letter.id]) == 1
    consumer = inspected.broker.consume("idle", prefetch=1, timeout=100)
    try:
        again = _next(consumer)
        consumer.ack(again)
    finally:
        consumer.close()
    assert again.message_id == message.message_id
    assert (again.args, again.kwargs) == ((7,), {"k": "v"})
    assert again.options.get("max_retries") == 5
    for reset in ("retries", "traceback", "failure_reason", "failed_at", "eta"):
        assert reset not in again.options, (reset, again.options)


# ---------------------------------------------------------------------------------------
# the worker registry
# ---------------------------------------------------------------------------------------
def test_worker_rows_of_a_two_process_pool(inspected):
    pool = inspected.pool("-p", "2", "-t", "3", "-Q", "work")
    pids = pool.wait_ready(2)
    eventually(lambda: sorted(w["pid"] for w in inspected.inspector.workers()), sorted(pids))
    for n in range(10):
        inspected.send("work", "ok", n)
    inspected.send("work", "doomed", 7)

    def totals() -> tuple[Any, Any, Any]:
        rows = inspected.inspector.workers()
        return tuple(sum(w[k] for w in rows) for k in ("processed", "succeeded", "failed"))

    # doomed: 2 attempts (one retry), both failed.
    eventually(totals, (12, 10, 2))
    for entry in inspected.inspector.workers():
        assert entry["host"] == socket.gethostname()
        assert entry["queues"] == ["work"] and entry["threads"] == 3
        assert entry["running"] == [] and entry["owner"]
        assert entry["started_at"] <= entry["heartbeat_at"]
        assert isinstance(entry["activity"], dict)
    inspected.stop(pool)
    eventually(lambda: inspected.inspector.workers(), [])

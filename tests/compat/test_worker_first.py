"""Dramatiq's testing style: a ``Worker`` started in a fixture before the test declares its
actors; ``join`` fails fast with the dead-lettered message's own exception."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

import liteq
from liteq.brokers.stub import StubBroker
from liteq.errors import ResultFailure, SkipMessage, TimeLimitExceeded
from liteq.results import Results
from liteq.results.backends import SqliteBackend, StubBackend


@pytest.fixture(params=["stub", "sqlite"])
def broker(request: pytest.FixtureRequest, tmp_path) -> Iterator[liteq.Broker]:
    broker: liteq.Broker = (StubBroker() if request.param == "stub"
                            else liteq.SqliteBroker(str(tmp_path / "q.db")))
    previous = liteq.broker._broker
    liteq.set_broker(broker)
    yield broker
    broker.close()
    liteq.broker._broker = previous


@pytest.fixture
def worker(broker: liteq.Broker) -> Iterator[liteq.Worker]:
    worker = liteq.Worker(broker, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop()


def test_actors_declared_after_the_worker_started_are_consumed(broker, worker):
    seen = []

    @liteq.actor
    def remember(x):
        seen.append(x)

    @liteq.actor(queue_name="other")
    def other(x):
        seen.append(-x)

    remember.send(1)
    other.send(2)
    broker.join(remember.queue_name, timeout=10000)
    broker.join(other.queue_name, timeout=10000)
    worker.join()
    assert sorted(seen) == [-2, 1]


def test_an_async_actor_declared_after_the_worker_started_runs(broker, worker):
    seen = []

    @liteq.actor
    async def later(x):
        await asyncio.sleep(0)
        seen.append(x)

    later.send(3)
    broker.join(later.queue_name, timeout=10000)
    assert seen == [3]


def test_join_reraises_the_actors_exception_by_default(broker, worker):
    @liteq.actor(max_retries=0)
    def fails():
        raise ValueError("the actor's own error")

    fails.send()
    with pytest.raises(ValueError, match="the actor's own error"):
        broker.join(fails.queue_name, timeout=10000)


def test_join_reraises_the_age_limit_skip(broker, worker):
    @liteq.actor(max_age=1)
    def old():
        raise AssertionError("must not run")

    message = old.message().copy(message_timestamp=0)
    broker.enqueue(message)
    with pytest.raises(SkipMessage, match="Message age limit exceeded"):
        broker.join(old.queue_name, timeout=10000)


def test_join_without_fail_fast_returns(broker, worker):
    @liteq.actor(max_retries=0)
    def fails():
        raise ValueError("ignored")

    fails.send()
    broker.join(fails.queue_name, timeout=10000, fail_fast=False)


def test_join_reraises_a_time_limit(broker, worker):
    @liteq.actor(time_limit=100, max_retries=0)
    def slow():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # Python code: TimeLimit can interrupt it
            time.sleep(0.01)

    slow.send()
    with pytest.raises(TimeLimitExceeded):
        broker.join(slow.queue_name, timeout=20000)


def test_the_result_of_an_age_limited_message_is_its_skip(broker, worker):
    backend = (StubBackend() if isinstance(broker, StubBroker)
               else SqliteBackend(broker.path))  # type: ignore[attr-defined]
    broker.add_middleware(Results(backend=backend))

    @liteq.actor(max_age=1, store_results=True)
    def perishable():
        raise AssertionError("must not run")

    message = broker.enqueue(perishable.message().copy(message_timestamp=0))
    broker.join(perishable.queue_name, timeout=10000, fail_fast=False)
    with pytest.raises(ResultFailure) as failure:
        message.get_result(backend=backend, block=True, timeout=5000)
    assert failure.value.orig_exc_type == "SkipMessage"
    assert failure.value.orig_exc_msg == "Message age limit exceeded"

"""Factories of every broker the contract suite runs over, each on a fresh, empty store.

A factory gets the test's ``request`` (for the session server fixtures of
tests/conftest.py, which skip when a server cannot be started) and returns
``(broker, close)``; ``close`` also removes what the broker left on a shared server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

import pytest

import liteq
from liteq.brokers.stub import StubBroker

Made = tuple[liteq.Broker, Callable[[], None]]


def stub(request: pytest.FixtureRequest) -> Made:
    broker = StubBroker(fail_fast_default=False)
    return broker, broker.close


def sqlite(request: pytest.FixtureRequest) -> Made:
    path = request.getfixturevalue("tmp_path") / "contract.db"
    broker = liteq.SqliteBroker(str(path), fail_fast_default=False)
    return broker, broker.close


def redis(request: pytest.FixtureRequest) -> Made:
    """A Redis broker in a fresh namespace whose keys are deleted on close."""
    pytest.importorskip("redis", reason="redis-py is not installed (pip install 'liteq[redis]')")
    from liteq.brokers.redis import RedisBroker

    namespace = f"contract-{uuid.uuid4().hex[:12]}"
    broker = RedisBroker(url=request.getfixturevalue("redis_url"), namespace=namespace)

    def close() -> None:
        keys = list(broker.client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            broker.client.delete(*keys)
        broker.close()

    return broker, close


def delete_queues(url: str, names: Iterable[str]) -> None:
    """Delete ``Q``, ``Q.DQ`` and ``Q.XQ`` of every queue in ``names`` (missing ones too)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for name in names:
            for suffix in ("", ".DQ", ".XQ"):
                channel = connection.channel()
                channel.queue_delete(name + suffix)
                channel.close()
    finally:
        connection.close()


def rabbitmq(request: pytest.FixtureRequest) -> Made:
    """A RabbitMQ broker with ``max_priority=10`` on empty queues (deleted again on close)."""
    pytest.importorskip("pika", reason="pika is not installed (pip install 'liteq[rabbitmq]')")
    from liteq.brokers.rabbitmq import RabbitmqBroker

    url = request.getfixturevalue("rabbitmq_url")
    delete_queues(url, ["default"])
    broker = RabbitmqBroker(url=url, max_priority=10)

    def close() -> None:
        names = set(broker.get_declared_queues()) | {"default"}
        broker.close()
        delete_queues(url, names)

    return broker, close


FACTORIES: dict[str, Callable[[pytest.FixtureRequest], Made]] = {
    "stub": stub, "sqlite": sqlite, "redis": redis, "rabbitmq": rabbitmq,
}
#: Brokers that order a queue by message priority (larger first). RabbitMQ does with
#: ``max_priority``; Redis has no broker priority.
PRIORITY_ORDERED = {"stub", "sqlite", "rabbitmq"}
#: Brokers on which an ack or nack through an earlier delivery of a message (given back
#: and delivered again) changes nothing. Redis keys a broker's deliveries by message id
#: (as Dramatiq's does), so its stale ack settles the redelivery; the StubBroker keeps no
#: delivery state at all.
STALE_ACK_SAFE = {"sqlite", "rabbitmq"}
#: Brokers whose ``enqueue_many`` writes all of the messages or none of them.
ATOMIC_ENQUEUE_MANY = {"sqlite", "redis"}

"""Factories of every broker the contract suite runs over, each on a fresh, empty store.

A factory returns ``(broker, close)``; it calls ``pytest.skip`` when what it needs (a
server, a client library) is not there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import liteq
from liteq.brokers.stub import StubBroker

Factory = Callable[[Any, list[Any] | None], tuple[liteq.Broker, Callable[[], None]]]


def stub(tmp_path: Any, middleware: list[Any] | None) -> tuple[liteq.Broker, Callable[[], None]]:
    broker = StubBroker(middleware, fail_fast_default=False)
    return broker, broker.close


def sqlite(tmp_path: Any, middleware: list[Any] | None
           ) -> tuple[liteq.Broker, Callable[[], None]]:
    broker = liteq.SqliteBroker(str(tmp_path / "contract.db"), middleware=middleware)
    return broker, broker.close


FACTORIES: dict[str, Factory] = {"stub": stub, "sqlite": sqlite}
#: Brokers that order a queue by message priority (larger first).
PRIORITY_ORDERED = {"stub", "sqlite"}

# RabbitMQ (needs pika and a server; the factory skips otherwise).
from .rabbitmq_factory import rabbitmq  # noqa: E402

FACTORIES["rabbitmq"] = rabbitmq
PRIORITY_ORDERED.add("rabbitmq")

# Redis (needs redis-py and a server; the factory skips otherwise). No priority order.
from .redis_factory import redis  # noqa: E402

FACTORIES["redis"] = redis

"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import liteq
import liteq.broker
from liteq.brokers.stub import StubBroker


@pytest.fixture
def stub_broker() -> Iterator[StubBroker]:
    """An in-memory broker with the default middleware, made the global broker for the test."""
    previous = liteq.broker._broker
    broker = StubBroker()
    liteq.broker.set_broker(broker)
    try:
        yield broker
    finally:
        broker.close()
        liteq.broker.set_broker(previous)  # type: ignore[arg-type]


@pytest.fixture
def db_path(tmp_path) -> str:
    """A fresh database file path under the test's temporary directory."""
    return str(tmp_path / "liteq.db")


@pytest.fixture
def sqlite_broker(db_path: str) -> Iterator[liteq.SqliteBroker]:
    """A SQLite broker on a real file, made the global broker for the test."""
    previous = liteq.broker._broker
    broker = liteq.SqliteBroker(db_path)
    liteq.broker.set_broker(broker)
    try:
        yield broker
    finally:
        broker.close()
        liteq.broker.set_broker(previous)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private Redis server on a free port of 127.0.0.1 for the whole test session."""
    from benchmarks.servers import INSTALL_HINT, ServerUnavailable, redis_server

    try:
        with redis_server() as url:
            yield url
    except ServerUnavailable as e:
        pytest.skip(f"no Redis server: {e}; install with: {INSTALL_HINT}")


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A private RabbitMQ node on free ports of 127.0.0.1 for the whole test session."""
    from benchmarks.servers import INSTALL_HINT, ServerUnavailable, rabbitmq_server

    try:
        with rabbitmq_server() as url:
            yield url
    except ServerUnavailable as e:
        pytest.skip(f"no RabbitMQ server: {e}; install with: {INSTALL_HINT}")

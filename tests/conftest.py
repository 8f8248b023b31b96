"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a ``liteq worker`` pool on ``tmp_path/q.db`` (tests/pools.py)."""
    return dict(os.environ, LITEQ_BROKER_URL=f"sqlite:///{tmp_path / 'q.db'}",
                LITEQ_TEST_RECORD=str(tmp_path / "record.txt"), PYTHONUNBUFFERED="1")


@pytest.fixture
def pools(tmp_path: Path, env: dict[str, str]) -> Iterator:
    """Start ``liteq worker`` pools (``pools(*args)``); every one is killed at the end."""
    from pools import Pool

    started: list[Pool] = []

    def start(*args: str, extra_env: dict[str, str] | None = None, **kw: Any) -> Pool:
        pool = Pool(tmp_path, dict(env, **(extra_env or {})), *args, **kw)
        started.append(pool)
        return pool

    try:
        yield start
    finally:
        for pool in started:
            pool.kill()


def _server(kind: str) -> Iterator[str]:
    """Run the ``kind`` server (see benchmarks/servers.py) or skip, saying how to install it."""
    from benchmarks import servers

    try:
        with getattr(servers, f"{kind}_server")() as url:
            yield url
    except servers.ServerUnavailable as e:
        pytest.skip(f"no {kind} server: {e}; install with: {servers.INSTALL_HINT}")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private Redis server on a free port of 127.0.0.1 for the whole test session."""
    yield from _server("redis")


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A private RabbitMQ node on free ports of 127.0.0.1 for the whole test session."""
    yield from _server("rabbitmq")


@pytest.fixture
def ns(redis_url: str) -> Iterator[str]:
    """A fresh Redis namespace; every key under it (and ``<ns>-*``) is deleted afterwards."""
    import uuid

    import redis

    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{name}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def r(redis_url: str) -> Iterator[Any]:
    """A redis-py client on the session's Redis server."""
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()

"""The RabbitMQ factory of the contract suite, and a RabbitMQ node shared by the test session.

``shared_rabbitmq_url()`` returns ``LITEQ_TEST_RABBITMQ_URL`` when it is set, else starts
one private node (benchmarks/servers.py) on first use, stopped when the interpreter
exits; it skips the test when RabbitMQ or pika is not installed.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest

import liteq

_lock = threading.Lock()
_url: str | None = None
_failure: str | None = None


def shared_rabbitmq_url() -> str:
    """The URL of a RabbitMQ node for this test session (see the module docstring)."""
    global _url, _failure
    if importlib.util.find_spec("pika") is None:
        pytest.skip("pika is not installed (pip install 'liteq[rabbitmq]')")
    url = os.environ.get("LITEQ_TEST_RABBITMQ_URL")
    if url:
        return url
    with _lock:
        if _url is None and _failure is None:
            from benchmarks.servers import INSTALL_HINT, ServerUnavailable, rabbitmq_server

            stack = contextlib.ExitStack()
            try:
                _url = stack.enter_context(rabbitmq_server())
            except ServerUnavailable as e:
                _failure = f"no RabbitMQ server: {e}; install with: {INSTALL_HINT}"
            else:
                atexit.register(stack.close)
    if _url is None:
        pytest.skip(_failure or "no RabbitMQ server")
    return _url


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


def rabbitmq(tmp_path: Any, middleware: list[Any] | None
             ) -> tuple[liteq.Broker, Callable[[], None]]:
    """A RabbitMQ broker with ``max_priority=10`` on empty queues (deleted again on close)."""
    url = shared_rabbitmq_url()
    from liteq.brokers.rabbitmq import RabbitmqBroker

    delete_queues(url, ["default"])
    broker = RabbitmqBroker(url=url, middleware=middleware, max_priority=10)

    def close() -> None:
        names = set(broker.get_declared_queues()) | {"default"}
        broker.close()
        delete_queues(url, names)

    return broker, close

"""The Redis factory of the contract suite, and a Redis server shared by the test session.

``shared_redis_url()`` returns ``LITEQ_TEST_REDIS_URL`` when it is set, else starts one
private ``redis-server`` (benchmarks/servers.py) on first use, stopped when the
interpreter exits; it skips the test when redis-server or redis-py is not installed.
Each broker gets a fresh namespace whose keys are deleted on close.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import liteq

_lock = threading.Lock()
_url: str | None = None
_failure: str | None = None


def shared_redis_url() -> str:
    """The URL of a Redis server for this test session (see the module docstring)."""
    global _url, _failure
    if importlib.util.find_spec("redis") is None:
        pytest.skip("redis-py is not installed (pip install 'liteq[redis]')")
    url = os.environ.get("LITEQ_TEST_REDIS_URL")
    if url:
        return url
    with _lock:
        if _url is None and _failure is None:
            from benchmarks.servers import INSTALL_HINT, ServerUnavailable, redis_server

            stack = contextlib.ExitStack()
            try:
                _url = stack.enter_context(redis_server())
            except ServerUnavailable as e:
                _failure = f"no Redis server: {e}; install with: {INSTALL_HINT}"
            else:
                atexit.register(stack.close)
    if _url is None:
        pytest.skip(_failure or "no Redis server")
    return _url


def redis(tmp_path: Any, middleware: list[Any] | None
          ) -> tuple[liteq.Broker, Callable[[], None]]:
    """A Redis broker in a fresh namespace (its keys are deleted on close)."""
    url = shared_redis_url()
    from liteq.brokers.redis import RedisBroker

    namespace = f"contract-{uuid.uuid4().hex[:12]}"
    broker = RedisBroker(url=url, middleware=middleware, namespace=namespace)

    def close() -> None:
        client = broker.client
        try:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            broker.close()

    return broker, close

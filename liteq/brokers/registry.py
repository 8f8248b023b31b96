"""Which broker serves a URL: the scheme → broker table, and the process's default broker.

The core (``liteq.broker``) names no broker: ``get_broker()`` asks :func:`default_broker`
here on first use. A broker's module is imported only when a URL of its scheme is used,
so a missing client library (redis-py, pika) matters only to the URLs that need it.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from ..errors import BrokerError
from ..urls import check_url

if TYPE_CHECKING:
    from ..broker import Broker

#: URL scheme -> (module, class) of the broker that serves it.
BROKERS: dict[str, tuple[str, str]] = {
    "sqlite": ("liteq.brokers.sqlite", "SqliteBroker"),
    "redis": ("liteq.brokers.redis", "RedisBroker"),
    "rediss": ("liteq.brokers.redis", "RedisBroker"),
    "unix": ("liteq.brokers.redis", "RedisBroker"),
    "amqp": ("liteq.brokers.rabbitmq", "RabbitmqBroker"),
    "amqps": ("liteq.brokers.rabbitmq", "RabbitmqBroker"),
}
#: Schemes whose URL names a file, checked by the broker itself; the others name a server.
FILE_SCHEMES = {"sqlite"}
#: The database of the default broker when ``LITEQ_BROKER_URL`` is not set.
DEFAULT_PATH = "liteq.db"


def broker_from_url(url: str, **kwargs: Any) -> Broker:
    """Build a broker from ``sqlite:///path``, ``redis://…`` or ``amqp://…``."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in BROKERS:
        raise ValueError(
            f"unsupported broker URL scheme {scheme!r} in LITEQ_BROKER_URL or --broker")
    module_name, class_name = BROKERS[scheme]
    if scheme not in FILE_SCHEMES:
        check_url(url)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise BrokerError(
            f"no {scheme}:// broker in this liteq ({e}); use sqlite:///path.db"
        ) from None
    broker: Broker = getattr(module, class_name)(url=url, **kwargs)
    return broker


def default_broker() -> Broker:
    """The broker ``LITEQ_BROKER_URL`` names, else a SQLite broker on ``./liteq.db``."""
    url = os.environ.get("LITEQ_BROKER_URL")
    if url:
        return broker_from_url(url)
    from .sqlite import SqliteBroker

    return SqliteBroker(DEFAULT_PATH)

"""liteq: Dramatiq's programming model with one SQLite file as the default broker.

The layout (core, ``brokers/``, ``process/``, ``ops/``) and which folder may import which
are described in ARCHITECTURE.md at the repository root.
"""


from typing import Any

from . import errors as _errors
from .actor import Actor, actor
from .broker import Broker, Consumer, MessageProxy, get_broker, set_broker
from .brokers.registry import broker_from_url
from .brokers.sqlite import SqliteBroker
from .composition import group, pipeline
from .encoder import Encoder, JSONEncoder, PickleEncoder, get_encoder, set_encoder
from .errors import (
    ActorNotFound,
    BrokerConnectionError,
    BrokerError,
    ConnectionClosed,
    ConnectionFailed,
    DatabaseError,
    DecodeError,
    DramatiqError,
    EncodeError,
    InvalidOption,
    InvalidQueueName,
    LiteqError,
    NotALiteqDatabase,
    QueueJoinTimeout,
    QueueNotFound,
    RateLimitExceeded,
    Retry,
    SchemaTooNew,
)
from .generic import GenericActor
from .logging import get_logger
from .message import Message
from .middleware import Middleware
from .worker import ConsumerThread, Worker, WorkerThread

__version__ = "0.1.0"

__all__ = [
    "Actor", "ActorNotFound", "Broker", "BrokerConnectionError", "BrokerError",
    "ConnectionClosed", "ConnectionFailed", "Consumer", "ConsumerThread", "DatabaseError",
    "DecodeError", "DramatiqError", "EncodeError", "Encoder", "GenericActor", "InvalidOption",
    "InvalidQueueName", "JSONEncoder", "LiteqError", "Message", "MessageProxy", "Middleware",
    "NotALiteqDatabase", "PickleEncoder", "QueueJoinTimeout", "QueueNotFound",
    "RateLimitExceeded", "Retry", "SchemaTooNew", "SqliteBroker", "Worker", "WorkerThread",
    "actor", "broker_from_url", "get_broker", "get_encoder", "get_logger", "group",
    "pipeline", "set_broker", "set_encoder", "__version__",
]


def __getattr__(name: str) -> Any:
    """``liteq.ConnectionError``: Dramatiq's deprecated name, as in :mod:`liteq.errors`."""
    if name == "ConnectionError":
        return _errors.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""liteq: Dramatiq's programming model with one SQLite file as the default broker."""

from .actors import Actor, actor
from .broker import Broker, Consumer, MessageProxy, broker_from_url, get_broker, set_broker
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
from .message import Message
from .middleware import Middleware
from .store import SqliteBroker
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Actor", "ActorNotFound", "Broker", "BrokerConnectionError", "BrokerError",
    "ConnectionClosed", "ConnectionFailed", "Consumer", "DatabaseError", "DecodeError",
    "EncodeError", "Encoder", "InvalidOption", "InvalidQueueName", "JSONEncoder", "LiteqError",
    "Message", "MessageProxy", "Middleware", "NotALiteqDatabase", "PickleEncoder",
    "QueueJoinTimeout", "QueueNotFound", "RateLimitExceeded", "Retry", "SchemaTooNew",
    "SqliteBroker", "Worker", "actor", "broker_from_url", "get_broker", "get_encoder", "group",
    "pipeline",
    "set_broker", "set_encoder", "__version__",
]

"""``liteq.brokers.redis.RedisBroker``: Dramatiq's Redis layout (needs redis-py)."""

from .broker import RedisBroker
from .consumer import RedisConsumer

__all__ = ["RedisBroker", "RedisConsumer"]

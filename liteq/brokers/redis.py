"""``liteq.brokers.redis.RedisBroker``: Dramatiq's import path; the code is in ``redis_compat``."""

from ..redis_compat import RedisBroker
from ..redis_consumer import RedisConsumer

__all__ = ["RedisBroker", "RedisConsumer"]

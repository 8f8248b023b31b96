"""Public face of the Redis broker (Dramatiq's Redis layout): its code lives in
``liteq/brokers/redis/`` (broker, consumer, connection, Lua script).

``liteq.redis_compat.RedisBroker`` is the same class as ``liteq.brokers.redis.RedisBroker``.
Importing it needs redis-py (``pip install 'liteq[redis]'``).
"""

from .brokers.redis.broker import RedisBroker, release
from .brokers.redis.consumer import RedisConsumer

__all__ = ["RedisBroker", "RedisConsumer", "release"]

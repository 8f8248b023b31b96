"""A rate-limiter backend on Redis, with Dramatiq's key layout (plain integer strings,
notifications as a one-element list) so liteq and Dramatiq processes can share limits.

Counter updates are Lua scripts, so each runs atomically on the server in one round trip.
"""

from __future__ import annotations

from typing import Any

try:
    import redis
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the Redis rate-limiter backend needs redis-py; install it with: "
        "pip install 'liteq[redis]'"
    ) from e

from ..backend import Keys, RateLimiterBackend, resolve_keys

# KEYS[1] = key, KEYS[2..] = keys to sum; ARGV = amount, minimum, maximum, ttl ("" = no bound).
_CHANGE = """
local value = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
if ARGV[2] ~= '' and value < tonumber(ARGV[2]) then return 0 end
if ARGV[3] ~= '' then
    local total = tonumber(ARGV[1])
    for i = 2, #KEYS do total = total + tonumber(redis.call('GET', KEYS[i]) or '0') end
    if value > tonumber(ARGV[3]) or total > tonumber(ARGV[3]) then return 0 end
end
redis.call('SET', KEYS[1], value, 'PX', ARGV[4])
return 1
"""


class RedisBackend(RateLimiterBackend):
    """Keeps counters in Redis; give a ``client``, a ``url``, or ``redis.Redis`` keywords."""

    def __init__(
        self, *, client: redis.Redis | None = None, url: str | None = None, **parameters: Any
    ) -> None:
        if client is None:
            client = redis.Redis.from_url(url, **parameters) if url else redis.Redis(**parameters)
        self.client = client
        self._change = client.register_script(_CHANGE)

    def add(self, key: str, value: int, ttl: int) -> bool:
        return bool(self.client.set(key, value, px=ttl, nx=True))

    def incr(self, key: str, amount: int, maximum: int, ttl: int) -> bool:
        return bool(self._change(keys=[key], args=[amount, "", maximum, ttl]))

    def decr(self, key: str, amount: int, minimum: int, ttl: int) -> bool:
        return bool(self._change(keys=[key], args=[-amount, minimum, "", ttl]))

    def incr_and_sum(self, key: str, keys: Keys, amount: int, maximum: int, ttl: int) -> bool:
        return bool(self._change(keys=[key, *resolve_keys(keys)], args=[amount, "", maximum, ttl]))

    def wait(self, key: str, timeout: int | None) -> bool:
        # BLMOVE pops the notification and pushes it straight back for the other waiters;
        # a timeout of 0 means "forever" to Redis.
        seconds = 0 if timeout is None else max(timeout, 1) / 1000
        # Redis takes a decimal timeout (redis-py hints int).
        moved = self.client.blmove(key, key, seconds, "RIGHT", "RIGHT")  # type: ignore[arg-type]
        return moved is not None and moved in (b"x", "x")

    def wait_notify(self, key: str, ttl: int) -> None:
        with self.client.pipeline() as pipe:
            pipe.rpush(key, b"x")
            pipe.pexpire(key, ttl)
            pipe.execute()

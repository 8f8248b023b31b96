"""A result backend on Redis with Dramatiq's layout: a one-element list per result.

Blocking reads use ``BLMOVE key key RIGHT RIGHT`` (Redis >= 6.2; ``BRPOPLPUSH`` with a
fractional timeout): the one element is popped and pushed straight back, so a waiter
wakes the moment the result is pushed and the result stays for other readers.
"""

from __future__ import annotations

from typing import Any, cast

try:
    import redis
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "RedisBackend needs redis-py; install it with: pip install 'liteq[redis]'"
    ) from e

from ...encoder import Encoder
from ..backend import Missing, ResultBackend


class RedisBackend(ResultBackend):
    """Stores results in Redis; give a ``client``, a ``url``, or ``redis.Redis`` keywords."""

    def __init__(
        self,
        *,
        namespace: str = "liteq-results",
        encoder: Encoder | None = None,
        client: redis.Redis | None = None,
        url: str | None = None,
        **parameters: Any,
    ) -> None:
        super().__init__(namespace=namespace, encoder=encoder)
        if client is None:
            client = redis.Redis.from_url(url, **parameters) if url else redis.Redis(**parameters)
        self.client = client

    def _get(self, key: str) -> Any:
        data = self.client.lindex(key, 0)
        return Missing if data is None else self.encoder.decode(cast(bytes, data))

    def _wait(self, key: str, timeout: int) -> Any:
        # Redis reads a zero timeout as "forever", so a zero timeout is a plain read.
        if timeout <= 0:
            return self._get(key)
        # Redis takes a decimal timeout (redis-py hints int).
        data = self.client.blmove(key, key, timeout / 1000, "RIGHT", "RIGHT")  # type: ignore[arg-type]
        return Missing if data is None else self.encoder.decode(cast(bytes, data))

    def _store(self, key: str, value: Any, ttl: int) -> None:
        with self.client.pipeline() as pipe:
            pipe.delete(key)
            pipe.lpush(key, self.encoder.encode(value))
            pipe.pexpire(key, ttl)
            pipe.execute()

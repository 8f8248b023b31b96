"""A distributed semaphore (a mutex when ``limit=1``)."""

from __future__ import annotations

from .backend import RateLimiterBackend
from .rate_limiter import RateLimiter


class ConcurrentRateLimiter(RateLimiter):
    """At most ``limit`` holders at once; a slot not given back frees itself after ``ttl`` ms
    (for holders that died), so ``ttl`` must exceed the longest guarded section."""

    def __init__(
        self, backend: RateLimiterBackend, key: str, *, limit: int = 1, ttl: int = 900000
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        super().__init__(backend, key)
        self.limit = limit
        self.ttl = ttl

    def _acquire(self) -> bool:
        return self.backend.incr(self.key, 1, self.limit, self.ttl)

    def _release(self) -> None:
        self.backend.decr(self.key, 1, 0, self.ttl)

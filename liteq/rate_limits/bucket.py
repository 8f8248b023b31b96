"""A fixed-window limiter: at most ``limit`` acquisitions per ``bucket`` ms window."""

from __future__ import annotations

from ..common import current_millis
from .backend import RateLimiterBackend
from .rate_limiter import RateLimiter


class BucketRateLimiter(RateLimiter):
    """Counts acquisitions per aligned window of ``bucket`` ms; cheap, but up to twice
    ``limit`` may pass around a window boundary (use ``WindowRateLimiter`` to avoid that)."""

    def __init__(
        self, backend: RateLimiterBackend, key: str, *, limit: int = 1, bucket: int = 1000
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        if bucket < 1:
            raise ValueError(f"bucket must be at least 1 ms, got {bucket!r}")
        super().__init__(backend, key)
        self.limit = limit
        self.bucket = bucket

    def _acquire(self) -> bool:
        now = current_millis()
        bucket_key = f"{self.key}@{now - now % self.bucket}"
        return self.backend.incr(bucket_key, 1, self.limit, self.bucket)

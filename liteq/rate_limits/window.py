"""A sliding-window limiter: at most ``limit`` acquisitions in any ``window`` seconds."""

from __future__ import annotations

import time

from .backend import RateLimiterBackend
from .rate_limiter import RateLimiter


class WindowRateLimiter(RateLimiter):
    """Counts acquisitions per second and sums the last ``window`` seconds' counts.

    ``window`` is in seconds (not ms), as in Dramatiq.
    """

    def __init__(
        self, backend: RateLimiterBackend, key: str, *, limit: int = 1, window: int = 1
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        if window < 1:
            raise ValueError(f"window must be at least 1 second, got {window!r}")
        super().__init__(backend, key)
        self.limit = limit
        self.window = window

    def _acquire(self) -> bool:
        second = int(time.time())
        keys = [f"{self.key}@{second - i}" for i in range(self.window)]
        return self.backend.incr_and_sum(keys[0], keys, 1, self.limit, self.window * 1000)
